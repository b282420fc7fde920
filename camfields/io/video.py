"""Video input and output through the ffmpeg binary of imageio-ffmpeg.

Frames are (T, H, W, 3) float tensors in [0, 1]. A video is a file ffmpeg reads (mp4, mkv,
y4m, ...) or a folder of image files taken in name order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from camfields.errors import CamfieldsError, first_line
from camfields.io.images import list_images, load_image


def imageio_ffmpeg() -> ModuleType:
    """The ``imageio_ffmpeg`` module (ffmpeg binary), imported on first use so that tasks without
    video input or output run where it is missing."""
    try:
        import imageio_ffmpeg as module
    except ImportError:
        raise CamfieldsError("reading and writing videos needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    return module


def _file_frames(path: Path, start: int, stop: int | None, stride: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    try:
        reader = imageio_ffmpeg().read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        frames = []
        for index, raw in enumerate(reader):
            if stop is not None and index >= stop:
                reader.close()
                break
            if index >= start and (index - start) % stride == 0:
                frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
    except (OSError, RuntimeError, StopIteration, KeyError) as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CamfieldsError(f"cannot read video {path}: {first}") from None
    return frames, (width, height)


def _folder_frames(path: Path, start: int, stop: int | None, stride: int) -> list[np.ndarray]:
    files = list_images(path)[start:stop:stride]
    frames = []
    for file in files:
        pixels = load_image(file).pixels
        if pixels.shape[2] == 4:
            pixels = pixels[..., :3]
        elif pixels.shape[2] == 1:
            pixels = pixels.expand(-1, -1, 3)
        if frames and pixels.shape != frames[0].shape:
            raise CamfieldsError(
                f"{path}: frames of different sizes: {files[0].name} is {frames[0].shape[1]}x{frames[0].shape[0]}, "
                f"{file.name} is {pixels.shape[1]}x{pixels.shape[0]}"
            )
        frames.append(pixels)
    return frames


def read_video(
    path: Path,
    start: int = 0,
    frames: int | None = None,
    stride: int = 1,
    size: tuple[int, int] | None = None,
    crop: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Frames (T, H, W, 3) in [0, 1] of a video file or a folder of frames.

    Args:
        path: video file or folder of images.
        start: index of the first frame taken.
        frames: how many frames to take (default: all from ``start``).
        stride: take every ``stride``-th frame.
        size: (width, height) to resize to (area interpolation), after cropping.
        crop: (width, height) of a centred crop, taken first.
    """
    path = Path(path)
    if start < 0 or stride < 1 or (frames is not None and frames < 1):
        raise CamfieldsError(f"frame range start={start}, frames={frames}, stride={stride} is invalid")
    stop = None if frames is None else start + frames * stride
    if not path.exists():
        raise CamfieldsError(f"video {path} does not exist")
    if path.is_dir():
        pixels = _folder_frames(path, start, stop, stride)
        video = torch.stack(pixels) if pixels else None
    else:
        raw, _ = _file_frames(path, start, stop, stride)
        video = torch.from_numpy(np.stack(raw)).float() / 255.0 if raw else None
    if video is None:
        raise CamfieldsError(f"{path} has no frames in the range start={start}, frames={frames}, stride={stride}")
    if crop is not None:
        width, height = crop
        if width > video.shape[2] or height > video.shape[1]:
            raise CamfieldsError(f"crop {width}x{height} is larger than the {video.shape[2]}x{video.shape[1]} frames")
        top, left = (video.shape[1] - height) // 2, (video.shape[2] - width) // 2
        video = video[:, top : top + height, left : left + width]
    if size is not None and (size[0], size[1]) != (video.shape[2], video.shape[1]):
        nchw = F.interpolate(video.permute(0, 3, 1, 2), size=(size[1], size[0]), mode="area")
        video = nchw.permute(0, 2, 3, 1).contiguous()
    return video


def write_video(path: Path, frames: Iterable[torch.Tensor], fps: int = 30) -> int:
    """Write (H, W, 3) frames in [0, 1] as an H.264 mp4, one at a time as they come (odd sizes are
    padded by one pixel); returns the frame count. A failure removes the partial file."""
    ffmpeg, writer, count = imageio_ffmpeg(), None, 0  # a clear error when the plugin has no binary
    try:
        for frame in frames:
            array = (frame.detach().clamp(0, 1) * 255).round().byte().cpu().numpy()
            array = np.pad(array, ((0, array.shape[0] % 2), (0, array.shape[1] % 2), (0, 0)), mode="edge")
            if writer is None:
                size = (array.shape[1], array.shape[0])
                writer = ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", macro_block_size=2)
                writer.send(None)
            writer.send(np.ascontiguousarray(array))
            count += 1
        if writer is not None:
            writer.close()
    except BaseException as e:
        if writer is not None:
            writer.close()
        Path(path).unlink(missing_ok=True)
        if isinstance(e, (CamfieldsError, KeyboardInterrupt)):
            raise
        raise CamfieldsError(f"could not write video {path}: {type(e).__name__}: {first_line(e)}") from None
    return count
