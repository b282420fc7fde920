"""Image files: reading any image imageio reads into [0, 1] floats, and writing PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F

from camfields.errors import CamfieldsError, first_line

#: File extensions treated as images when a folder is given.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

#: Name of the embedded default image (scikit-image's public-domain NASA astronaut photo).
EMBEDDED_IMAGE = "astronaut"


class Image(NamedTuple):
    """A named image: ``pixels`` (H, W, C) float32 in [0, 1] and the source's bit depth."""

    name: str
    pixels: torch.Tensor
    bits: int


def to_unit_float(array: np.ndarray, source: str) -> torch.Tensor:
    """An image array (H, W) or (H, W, C) of any integer or float type as (H, W, C) float32 in [0, 1].

    Floats are clipped to [0, 1]; NaN or infinite ones (or values beyond float32) are refused.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise CamfieldsError(f"{source} is not a single gray, RGB or RGBA image (array shape {array.shape})")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise CamfieldsError(f"{source} is empty (0 pixels)")
    if array.dtype == np.bool_:
        data = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        data = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        data = array.astype(np.float32)
        if not np.isfinite(data).all():  # checked before clipping, which would turn inf into 1
            raise CamfieldsError(f"{source} holds NaN or infinite pixels")
        data = np.clip(data, 0.0, 1.0)
    else:
        raise CamfieldsError(f"{source} has unsupported pixel type {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(data))


def load_image(path: Path) -> Image:
    """Read an image file (8/16-bit, gray, RGB or RGBA) into an ``Image`` named by its stem."""
    path = Path(path)
    if not path.exists():
        raise CamfieldsError(f"image {path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise CamfieldsError(f"image {path} is empty (0 bytes)")
    try:
        array = iio.imread(path)
    except Exception as e:
        reason = first_line(e)
        raise CamfieldsError(f"could not read image {path}: {reason}") from None
    if array.ndim == 4:  # an animation or multi-page file: take its first frame
        array = array[0]
    array = np.asarray(array)
    bits = 16 if array.dtype.itemsize >= 2 and np.issubdtype(array.dtype, np.integer) else 8
    return Image(path.stem, to_unit_float(array, f"image {path}"), bits)


def load_embedded_image() -> Image:
    """The default image shipped inside scikit-image's wheel: 512x512 RGB."""
    from skimage import data

    pixels = to_unit_float(getattr(data, EMBEDDED_IMAGE)(), f"embedded image {EMBEDDED_IMAGE!r}")
    return Image(EMBEDDED_IMAGE, pixels, 8)


def list_images(folder: Path) -> list[Path]:
    """Image files (by extension) directly inside ``folder``, sorted by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CamfieldsError(f"folder {folder} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def downscale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average an (H, W, C) image by an integer factor (1 returns it unchanged)."""
    if factor < 1:
        raise CamfieldsError(f"downscale factor must be a positive integer, got {factor}")
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    if h < 1 or w < 1:
        raise CamfieldsError(f"downscale {factor} leaves no pixels of a {image.shape[1]}x{image.shape[0]} image")
    cropped = image[: h * factor, : w * factor].permute(2, 0, 1)[None]
    return F.avg_pool2d(cropped, factor)[0].permute(1, 2, 0).contiguous()


def save_png(path: Path, image: torch.Tensor, bits: int = 8) -> None:
    """Write an (H, W, C) image in [0, 1] as an 8- or 16-bit PNG."""
    dtype = np.uint16 if bits == 16 else np.uint8
    scale = float(np.iinfo(dtype).max)
    array = (image.detach().clamp(0, 1).cpu().numpy() * scale + 0.5).astype(dtype)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array[:, :, 0] if array.shape[2] == 1 else array)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] as 8-bit levels on the CPU (compact to send between ranks)."""
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8).cpu()


def pixel_coords(height: int, width: int) -> torch.Tensor:
    """Pixel-centre coordinates (H * W, 2) as (x, y) in (-1, 1), row-major: pixel (row i, column j)
    sits at ``((2j + 1) / W - 1, (2i + 1) / H - 1)``."""
    ys = (2 * torch.arange(height, dtype=torch.float32) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float32) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)
