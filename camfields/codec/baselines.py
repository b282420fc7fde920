"""Classic codecs for rate-distortion comparisons: x264 and x265 through the ffmpeg binary of imageio-ffmpeg.

Frames go rgb24 -> yuv420p -> encoder -> raw elementary stream (.264 / .265) -> decoder ->
rgb24; the rate is counted from the elementary stream's bytes, as for our bitstreams.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camfields.errors import CamfieldsError
from camfields.io.video import imageio_ffmpeg

#: ffmpeg encoder, raw stream format and extra arguments of each baseline
CODECS = {
    "x264": ("libx264", "h264", []),
    "x265": ("libx265", "hevc", ["-x265-params", "log-level=error"]),
}


@dataclass
class CodedClip:
    """A clip through a classic codec: decoded frames (T, H, W, 3) in [0, 1] and the stream's bytes."""

    frames: torch.Tensor
    bytes: int
    seconds_encode: float
    seconds_decode: float


def available(codec: str) -> bool:
    """True when the bundled ffmpeg has the codec's encoder."""
    encoder = CODECS[codec][0]
    try:
        listing = subprocess.run(
            [imageio_ffmpeg().get_ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError, CamfieldsError):
        return False
    return f" {encoder} " in listing


def _run(args: list[str], stdin: bytes | None, what: str) -> tuple[bytes, float]:
    import time

    t0 = time.perf_counter()
    done = subprocess.run(args, input=stdin, capture_output=True)
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise CamfieldsError(f"ffmpeg failed to {what}: {last[0]}")
    return done.stdout, time.perf_counter() - t0


def code_clip(frames: torch.Tensor, codec: str, crf: int, preset: str = "veryslow", fps: int = 25) -> CodedClip:
    """Encode frames (T, H, W, 3) in [0, 1] (even H and W) with ``codec`` at ``crf`` and decode them back."""
    if codec not in CODECS:
        raise CamfieldsError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    count, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise CamfieldsError(f"yuv420p needs an even frame size, got {width}x{height}")
    encoder, stream_format, extra = CODECS[codec]
    raw = (frames.clamp(0, 1) * 255).round().byte().cpu().numpy().tobytes()
    ffmpeg = imageio_ffmpeg().get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / f"clip.{stream_format}"
        _, encode_seconds = _run(
            [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
            + ["-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p", "-c:v", encoder, "-preset", preset]
            + ["-crf", str(crf), *extra, "-f", stream_format, str(stream)],
            raw,
            f"encode with {codec}",
        )
        decoded, decode_seconds = _run(
            [ffmpeg, "-loglevel", "error", "-i", str(stream), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            None,
            f"decode the {codec} stream",
        )
        size = stream.stat().st_size
    pixels = np.frombuffer(decoded, dtype=np.uint8)
    if pixels.size != count * height * width * 3:
        raise CamfieldsError(f"the {codec} stream decoded to {pixels.size // (height * width * 3)} of {count} frames")
    video = torch.from_numpy(pixels.reshape(count, height, width, 3).copy()).float() / 255.0
    return CodedClip(video, size, encode_seconds, decode_seconds)
