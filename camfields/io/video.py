"""Writing frames to a video file through the ffmpeg binary of imageio-ffmpeg."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from camfields.errors import CamfieldsError


def write_video(path: Path, frames: list[torch.Tensor] | torch.Tensor, fps: int = 30) -> None:
    """Write (H, W, 3) frames in [0, 1] as an H.264 mp4 (odd sizes are padded by one pixel)."""
    video = np.stack([(f.detach().clamp(0, 1) * 255).round().byte().cpu().numpy() for f in frames])
    pad = ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2), (0, 0))
    video = np.pad(video, pad, mode="edge")
    try:
        iio.imwrite(path, video, fps=fps, codec="libx264", macro_block_size=2, plugin="FFMPEG")
    except Exception as e:  # no ffmpeg binary, or it failed
        raise CamfieldsError(f"could not write video {path}: {type(e).__name__}: {e}") from None
