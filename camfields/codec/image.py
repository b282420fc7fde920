"""The image codec's file side: a fitted image field to a ``.camf`` file and back to pixels.

Post-training quantization: every parameter of the field is rounded to symmetric n-bit levels
(one bfloat16 step per tensor, ``compression.quantize.symmetric_integers``) and the buffers its
constructor draws at random (a Fourier projection) to 16-bit levels, as ``codec.fields`` says
for every field; buffers the constructor derives from the config are rebuilt by the decoder.
The file is a bitstream (``codec.bitstream``) whose header holds the format name, the image
size, its channels and PNG bit depth, the weights' bit depth and the field config.

Decoding needs this module, the bitstream reader and the field builder only: no training code
is imported. Pixel (row i, column j) of an H x W image sits at
``(x, y) = ((2j + 1) / W - 1, (2i + 1) / H - 1)``, as in ``tasks.image``.

Example::

    >>> import tempfile, pathlib
    >>> from camfields.fields import FieldConfig, EncodingConfig, build_field
    >>> cfg = FieldConfig(encoding=EncodingConfig("fourier", num_features=8), hidden=16)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "image.camf"
    >>> size = encode_image_field(path, build_field(cfg, 2, 3), cfg, 12, 16, 3, bits=8)
    >>> decode_image(path).shape
    torch.Size([12, 16, 3])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camfields.codec.bitstream import Bitstream, read_bitstream, write_bitstream
from camfields.codec.fields import (
    check_encodable,
    check_stored,
    check_weight_bits,
    header_of,  # noqa: F401 (re-exported for the commands)
    load_levels,
    quantize_state,
    stream_bits,
)
from camfields.config import from_dict
from camfields.errors import CamfieldsError
from camfields.fields import FieldConfig, build_field
from camfields.io.images import pixel_coords

IMAGE_FORMAT = "camfields-image/1"
#: what a header may ask of the decoder: pixels per side and in all, image channels, PNG depths
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 24
CHANNELS = (1, 2, 3, 4)
PNG_BITS = (8, 16)
#: pixels rendered at once (with the widest field, 2^14 units, 256 MiB of activations per layer)
CHUNK = 1 << 12
_HEADER_KEYS = ("height", "width", "channels", "png_bits", "weight_bits", "field")


@dataclass
class ImageField:
    """What an image file describes: the field (float32, CPU, eval mode, weights at their levels),
    the image size (H, W, C) and the bit depth of its PNG."""

    model: nn.Module
    height: int
    width: int
    channels: int
    png_bits: int


def _check_sizes(height: Any, width: Any, channels: Any, png_bits: Any, where: str) -> None:
    sides = (height, width)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in sides):
        raise CamfieldsError(f"{where}: the image's height and width must be from 1 to {MAX_SIDE}, got {sides}")
    if height * width > MAX_PIXELS:
        raise CamfieldsError(f"{where}: an image of {width}x{height} exceeds the decoder's {MAX_PIXELS:,} pixels")
    if channels not in CHANNELS or isinstance(channels, bool):
        raise CamfieldsError(f"{where}: the image must have 1 to 4 channels, got {channels!r}")
    if png_bits not in PNG_BITS or isinstance(png_bits, bool):
        raise CamfieldsError(f"{where}: the PNG bit depth must be 8 or 16, got {png_bits!r}")


def encode_image_field(
    path: Path,
    model: nn.Module,
    field_cfg: FieldConfig,
    height: int,
    width: int,
    channels: int,
    bits: int,
    png_bits: int = 8,
) -> int:
    """Write a fitted image field (``build_field(field_cfg, 2, channels)``) with ``bits``-bit weights
    to ``path``; returns the file size in bytes. The field must be the one ``field_cfg`` describes."""
    where = f"image file {path}"
    check_weight_bits(bits, where)
    _check_sizes(height, width, channels, png_bits, where)
    field_cfg.validate()
    check_encodable(model, lambda: build_field(field_cfg, in_dim=2, out_dim=channels), bits, where)
    header = {
        "format": IMAGE_FORMAT,
        "height": height,
        "width": width,
        "channels": channels,
        "png_bits": png_bits,
        "weight_bits": bits,
        "field": dataclasses.asdict(field_cfg),
    }
    return write_bitstream(path, header, stream_bits(model, bits), quantize_state(model, bits))


def _header(stream: Bitstream, path: Path) -> tuple[FieldConfig, int, int, int, int, int]:
    """(field config, height, width, channels, PNG bits, weight bits) of an image file's header, checked."""
    header = header_of(stream, path, IMAGE_FORMAT, "image", _HEADER_KEYS, ("field",))
    field_cfg = from_dict(FieldConfig, header["field"], f"{path} header")
    try:
        field_cfg.validate()
    except CamfieldsError as e:
        raise CamfieldsError(f"{path}: its header describes no field: {e}") from None
    sizes = [header[key] for key in ("height", "width", "channels", "png_bits")]
    _check_sizes(*sizes, str(path))
    check_weight_bits(header["weight_bits"], str(path))
    return field_cfg, *sizes, header["weight_bits"]


def field_from_bitstream(stream: Bitstream, path: Path | str = "the bitstream") -> ImageField:
    """The image field a bitstream describes.

    The header is checked first and the field it names is laid out without memory (on the meta
    device): the stored tensors' names and shapes must be exactly those it stores, every
    parameter's integers within its bit depth, before anything is allocated.
    """
    path = Path(path)
    field_cfg, height, width, channels, png_bits, bits = _header(stream, path)
    try:
        with torch.device("meta"):
            layout = build_field(field_cfg, in_dim=2, out_dim=channels)
    except CamfieldsError as e:
        raise CamfieldsError(f"{path}: its header describes no field: {e}") from None
    check_stored(stream, layout, bits, str(path), "the field its config describes")
    model = build_field(field_cfg, in_dim=2, out_dim=channels)
    return ImageField(load_levels(model, stream.tensors).eval(), height, width, channels, png_bits)


def read_image_field(path: Path) -> ImageField:
    """The image field of a file (checksum and header verified): see ``field_from_bitstream``."""
    return field_from_bitstream(read_bitstream(path), path)


@torch.no_grad()
def render(model: nn.Module, height: int, width: int) -> torch.Tensor:
    """The field's image (H, W, C) in [0, 1] at the pixel centres, ``CHUNK`` pixels at a time."""
    coords = pixel_coords(height, width).to(next(model.parameters()).device)
    out = torch.cat([model(coords[i : i + CHUNK]) for i in range(0, coords.shape[0], CHUNK)])
    return out.reshape(height, width, -1).clamp(0, 1)


def decode_image(path: Path, device: torch.device | None = None) -> torch.Tensor:
    """The image (H, W, C) in [0, 1] of an image file, rebuilt from the file alone."""
    field = read_image_field(path)
    return render(field.model.to(device or torch.device("cpu")), field.height, field.width)
