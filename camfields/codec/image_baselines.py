"""Classic image codecs for rate-distortion comparisons: JPEG, WebP, AVIF and JPEG 2000 through Pillow.

An 8-bit RGB image goes to the codec's file bytes in memory and back; the rate is counted from
those bytes (the whole file a user would ship, headers included), as for our ``.camf`` files.
Each codec sweeps one setting (``Codec.setting``) over ``Codec.sweep``, from low to high rate:

- ``jpeg``: libjpeg quality (4:2:0 chroma, optimized Huffman tables);
- ``webp``: libwebp quality at its slowest, best method 6;
- ``avif``: the AVIF encoder's quality at speed 6 (Pillow's default);
- ``jpeg2000``: OpenJPEG's target rate in bits per pixel (the 9/7 wavelet; Pillow's
  ``quality_mode="rates"`` takes the compression ratio 24 / bpp of 8-bit RGB) with the colour
  transform (``mct``), as a raw codestream (.j2k) without the JP2 boxes.

Example::

    >>> import torch
    >>> image = torch.rand(16, 24, 3)
    >>> coded = code_image(image, "jpeg", 75)
    >>> coded.image.shape, coded.bytes == len(encode(image, "jpeg", 75))
    (torch.Size([16, 24, 3]), True)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, features

from camfields.errors import CamfieldsError
from camfields.io.images import to_uint8


@dataclass(frozen=True)
class Codec:
    """A Pillow codec: its format and feature names, the setting it sweeps (from low to high rate)
    and the save options of one value of that setting."""

    pil_format: str
    feature: str
    setting: str
    sweep: tuple[float, ...]
    options: Callable[[float], dict[str, Any]]
    description: str


#: the codecs by name
CODECS: dict[str, Codec] = {
    "jpeg": Codec(
        "JPEG",
        "jpg",
        "quality",
        (2, 5, 10, 20, 30, 45, 60, 75, 90),
        lambda q: {"quality": int(q), "optimize": True, "subsampling": "4:2:0"},
        "JPEG (libjpeg via Pillow), 4:2:0, optimized Huffman tables",
    ),
    "webp": Codec(
        "WEBP",
        "webp",
        "quality",
        (0, 5, 10, 20, 35, 50, 70, 85, 95),
        lambda q: {"quality": int(q), "method": 6},
        "WebP (libwebp via Pillow), lossy, method 6",
    ),
    "avif": Codec(
        "AVIF",
        "avif",
        "quality",
        (0, 10, 20, 30, 40, 50, 60, 70, 80, 90),
        lambda q: {"quality": int(q), "speed": 6},
        "AVIF (via Pillow), speed 6, 4:2:0",
    ),
    "jpeg2000": Codec(
        "JPEG2000",
        "jpg_2000",
        "bpp",
        (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
        lambda bpp: {
            "quality_mode": "rates",
            "quality_layers": [24.0 / bpp],
            "irreversible": True,
            "mct": 1,
            "no_jp2": True,
        },
        "JPEG 2000 (OpenJPEG via Pillow), 9/7 wavelet, RGB->YCbCr transform, target rate in bpp, raw codestream",
    ),
}


@dataclass
class CodedImage:
    """An image through a classic codec: the decoded image (H, W, 3) in [0, 1] (8-bit levels) and
    the encoded file's bytes."""

    image: torch.Tensor
    bytes: int


def _codec(name: str) -> Codec:
    """The codec ``name``, or one sentence when it is unknown or this Pillow lacks it."""
    if name not in CODECS:
        raise CamfieldsError(f"unknown image codec {name!r}; choose from {', '.join(CODECS)}")
    if not available(name):
        raise CamfieldsError(f"image codec {name!r} is unavailable: this Pillow was built without it")
    return CODECS[name]


def available(name: str) -> bool:
    """True when ``name`` is a known codec and this Pillow can write it (``PIL.features``)."""
    return name in CODECS and bool(features.check(CODECS[name].feature))


def encode(image: torch.Tensor, codec: str, value: float) -> bytes:
    """The file bytes of ``image`` (H, W, 3) in [0, 1], rounded to 8 bits, coded by ``codec`` at
    ``value`` of its setting."""
    spec = _codec(codec)
    if image.ndim != 3 or image.shape[2] != 3:
        raise CamfieldsError(f"{codec} takes an RGB image (H, W, 3), got shape {tuple(image.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image).numpy(), "RGB").save(buffer, spec.pil_format, **spec.options(value))
    return buffer.getvalue()


def decode(data: bytes) -> torch.Tensor:
    """The image (H, W, 3) in [0, 1] of a file's bytes, in any format Pillow reads."""
    with Image.open(io.BytesIO(data)) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    return torch.from_numpy(pixels.copy()).float() / 255.0


def code_image(image: torch.Tensor, codec: str, value: float) -> CodedImage:
    """``image`` (H, W, 3) in [0, 1] encoded by ``codec`` at ``value`` of its setting and decoded back."""
    data = encode(image, codec, value)
    return CodedImage(decode(data), len(data))
