"""The video codec's file side: a fitted NeRV generator to a ``.camf`` bitstream and back to frames.

Decoding needs this module, the bitstream reader and the generator's module only: no
training code is imported. Frame ``k`` of ``T`` sits at time ``t = k / (T - 1)`` in [0, 1]
(0 for a single frame).

Example::

    >>> import torch, tempfile, pathlib
    >>> from camfields.modules.nerv import GeneratorConfig, build_generator
    >>> cfg = GeneratorConfig(strides=[2, 2], channels=8, stem_channels=4, stem_hidden=16, embedding_levels=4)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clip.camf"
    >>> size = encode(path, build_generator(cfg, 16, 16), cfg, bits=8, frames=3)
    >>> decode_frames(path).shape
    torch.Size([3, 16, 16, 3])
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from camfields.codec.bitstream import Bitstream, QuantizedTensor, read_bitstream, write_bitstream
from camfields.compression.quantize import symmetric_integers
from camfields.config import from_dict
from camfields.errors import CamfieldsError
from camfields.io.images import save_png
from camfields.io.video import write_video
from camfields.modules.nerv import GeneratorConfig, NeRVGenerator, build_generator

BITSTREAM_FORMAT = "camfields-video/1"


def frame_times(count: int) -> torch.Tensor:
    """Times (T,) of the frames: k / (T - 1)."""
    return torch.arange(count, dtype=torch.float32) / max(count - 1, 1)


def quantize_generator(generator: NeRVGenerator, bits: int, per_channel: bool = False) -> list[QuantizedTensor]:
    """Every parameter as symmetric n-bit integers and its steps, in ``named_parameters`` order."""
    tensors = []
    for name, p in generator.named_parameters():
        values, steps = symmetric_integers(p, bits, per_channel)
        tensors.append(QuantizedTensor(name, tuple(p.shape), steps.cpu().numpy(), values.reshape(-1).cpu().numpy()))
    return tensors


def encode(
    path: Path, generator: NeRVGenerator, gen_cfg: GeneratorConfig, bits: int, frames: int, per_channel: bool = False
) -> int:
    """Write the bitstream of a fitted generator; returns the file size in bytes."""
    header = {
        "format": BITSTREAM_FORMAT,
        "width": generator.width,
        "height": generator.height,
        "frames": frames,
        "generator": dataclasses.asdict(gen_cfg),
    }
    return write_bitstream(path, header, bits, quantize_generator(generator, bits, per_channel))


def decoder_from_bitstream(stream: Bitstream) -> tuple[NeRVGenerator, int]:
    """The generator (float32, CPU) and frame count a bitstream describes."""
    header = stream.config
    if not isinstance(header, dict) or header.get("format") != BITSTREAM_FORMAT:
        raise CamfieldsError(f"the bitstream holds {header.get('format')!r}, not a camfields video")
    gen_cfg = from_dict(GeneratorConfig, header["generator"], "bitstream header")
    frames, height, width = header["frames"], header["height"], header["width"]
    if not all(isinstance(v, int) and 0 < v <= 1 << 16 for v in (frames, height, width)):
        raise CamfieldsError("the bitstream header gives an impossible frame count or size")
    generator = build_generator(gen_cfg, height, width)
    params = dict(generator.named_parameters())
    stored = {t.name: t for t in stream.tensors}
    if set(stored) != set(params):
        raise CamfieldsError("the bitstream's tensors do not match the generator its header describes")
    with torch.no_grad():
        for name, p in params.items():
            if stored[name].shape != tuple(p.shape):
                raise CamfieldsError(
                    f"tensor {name} has shape {stored[name].shape}, the generator needs {tuple(p.shape)}"
                )
            p.copy_(torch.from_numpy(stored[name].dequantize()))
    return generator.eval(), frames


@torch.no_grad()
def decode_frames(path: Path, device: torch.device | None = None, chunk: int = 4) -> torch.Tensor:
    """Every frame (T, H, W, 3) in [0, 1] of a bitstream file, rebuilt from the file alone."""
    generator, frames = decoder_from_bitstream(read_bitstream(path))
    generator = generator.to(device or torch.device("cpu"))
    times = frame_times(frames).to(device or torch.device("cpu"))
    out = torch.cat([generator(t).clamp(0, 1) for t in times.split(chunk)])
    return out.permute(0, 2, 3, 1)


def to_8bit(frames: torch.Tensor) -> torch.Tensor:
    """Frames rounded to 8-bit levels (what a player shows), still floats in [0, 1]."""
    return torch.round(frames.clamp(0, 1) * 255.0) / 255.0


def write_frames(frames: torch.Tensor, out: Path, fps: int = 25) -> None:
    """Frames (T, H, W, 3) to ``out``: an mp4 when it ends in .mp4, else a folder of PNGs."""
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_video(out, frames, fps)
        return
    out.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(out / f"frame_{index:04d}.png", frame)
