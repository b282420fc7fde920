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
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from camfields.codec.bitstream import Bitstream, QuantizedTensor, check_layout, read_bitstream, write_bitstream
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


#: what a header may ask of the decoder: frames, pixels per frame and activation values per frame
#: (float32: 1 GiB); its generator config is bounded by ``GeneratorConfig.validate``
MAX_FRAMES = 1 << 16
MAX_FRAME_PIXELS = 1 << 24
MAX_ACTIVATIONS = 1 << 28


def _header(stream: Bitstream, path: Path) -> tuple[GeneratorConfig, int, int, int]:
    """(generator config, frames, height, width) of a video bitstream's header, checked."""
    header = stream.config
    if not isinstance(header, dict) or header.get("format") != BITSTREAM_FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CamfieldsError(f"{path} holds {found!r}, not a camfields video ({BITSTREAM_FORMAT})")
    missing = [key for key in ("width", "height", "frames", "generator") if key not in header]
    if missing:
        raise CamfieldsError(f"{path}: the video header lacks {', '.join(missing)}")
    if not isinstance(header["generator"], dict):
        raise CamfieldsError(f"{path}: the video header's generator must be a table of settings")
    gen_cfg = from_dict(GeneratorConfig, header["generator"], f"{path} header")
    gen_cfg.validate(f"{path} header")
    frames, height, width = header["frames"], header["height"], header["width"]
    sizes = (frames, height, width)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_FRAMES for v in sizes):
        raise CamfieldsError(f"{path}: the header's frame count and size must be from 1 to {MAX_FRAMES}, got {sizes}")
    if height * width > MAX_FRAME_PIXELS:
        raise CamfieldsError(f"{path}: frames of {width}x{height} exceed the decoder's {MAX_FRAME_PIXELS:,} pixels")
    return gen_cfg, frames, height, width


def clip_size(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) of a video file, its checksum and header checked."""
    _, frames, height, width = _header(read_bitstream(path), Path(path))
    return frames, height, width


def activations_per_frame(generator: NeRVGenerator) -> int:
    """The most values one frame holds at once in the generator: the stem's map or a block's output."""
    pixels = generator.base[0] * generator.base[1]
    most = generator.stem_channels * pixels
    for channels, stride in zip(generator.channels, generator.strides):
        pixels *= stride * stride
        most = max(most, channels * pixels)
    return most


def decoder_from_bitstream(stream: Bitstream, path: Path | str = "the bitstream") -> tuple[NeRVGenerator, int]:
    """The generator (float32, CPU) and frame count a bitstream describes.

    The header is checked first and the generator it names is laid out without memory (on the
    meta device): its parameter names and shapes must be exactly the tensors the file holds, and
    one frame's activations must stay within ``MAX_ACTIVATIONS``, before anything is allocated.
    """
    gen_cfg, frames, height, width = _header(stream, Path(path))
    try:
        with torch.device("meta"):
            layout = build_generator(gen_cfg, height, width)
    except CamfieldsError as e:
        raise CamfieldsError(f"{path}: its header describes no generator: {e}") from None
    needed = {name: tuple(p.shape) for name, p in layout.named_parameters()}
    check_layout({t.name: t.shape for t in stream.tensors}, needed, str(path), "the generator")
    stored = {t.name: t for t in stream.tensors}
    if activations_per_frame(layout) > MAX_ACTIVATIONS:
        raise CamfieldsError(
            f"{path}: decoding one frame would hold {activations_per_frame(layout):,} values, "
            f"more than the decoder's {MAX_ACTIVATIONS:,}"
        )
    generator = build_generator(gen_cfg, height, width)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            p.copy_(torch.from_numpy(stored[name].dequantize()))
    return generator.eval(), frames


@torch.no_grad()
def iter_frames(path: Path, device: torch.device | None = None, chunk: int = 4) -> Iterator[torch.Tensor]:
    """The frames (H, W, 3) in [0, 1] of a bitstream file, rebuilt from the file alone, one at a time
    (at most ``chunk`` frames and ``MAX_ACTIVATIONS`` values in memory at once)."""
    device = device or torch.device("cpu")
    generator, frames = decoder_from_bitstream(read_bitstream(path), path)
    generator = generator.to(device)
    chunk = max(1, min(chunk, MAX_ACTIVATIONS // activations_per_frame(generator)))
    for times in frame_times(frames).to(device).split(chunk):
        yield from generator(times).clamp(0, 1).permute(0, 2, 3, 1)


def decode_frames(path: Path, device: torch.device | None = None, chunk: int = 4) -> torch.Tensor:
    """Every frame (T, H, W, 3) in [0, 1] of a bitstream file, in memory (``iter_frames`` streams them)."""
    return torch.stack(list(iter_frames(path, device, chunk)))


def to_8bit(frames: torch.Tensor) -> torch.Tensor:
    """Frames rounded to 8-bit levels (what a player shows), still floats in [0, 1]."""
    return torch.round(frames.clamp(0, 1) * 255.0) / 255.0


def write_frames(frames: Iterable[torch.Tensor], out: Path, fps: int = 25) -> int:
    """Frames (H, W, 3) to ``out`` as they come: an mp4 when it ends in .mp4, else a folder of PNGs;
    returns the frame count."""
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        return write_video(out, frames, fps)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(frames, 1):
        save_png(out / f"frame_{count - 1:04d}.png", frame)
    return count
