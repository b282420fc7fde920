"""Posed images over time: D-NeRF folders and packed ``.npz`` files.

A D-NeRF folder is a Blender scene (``io.blender``) whose frames carry a ``time`` in [0, 1].
A packed ``.npz`` holds ``images`` (N, H, W, 3) float in [0, 1], ``poses`` (N, 4, 4) (or
(N, 3, 4), completed with [0, 0, 0, 1]) camera-to-world (OpenGL convention), ``times`` (N,) in
[0, 1], ``focal`` (pixels) and an optional ``split`` array of 'train' / 'val' / 'test' strings
(without it, every image is training data). NaN or infinity anywhere is refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from camfields.errors import CamfieldsError
from camfields.io.blender import CameraSplit, check_pose, check_times, load_blender
from camfields.io.images import downscale

NPZ_KEYS = ("images", "poses", "times", "focal")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CamfieldsError(f"dynamic scene file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CamfieldsError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise CamfieldsError(f"{path} lacks {', '.join(missing)}; a dynamic .npz needs {', '.join(NPZ_KEYS)}")
    return arrays


def _numeric(data: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """The array ``data[key]``, with one clear error unless it holds integers or floats."""
    array = data[key]
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise CamfieldsError(f"{path}: {key} must hold numbers, got an array of {array.dtype}")
    return array


def _check_images(images: np.ndarray, path: Path) -> None:
    """One clear error unless ``images`` is (N, H, W, 3) float with N, H, W > 0 and every pixel finite in [0, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise CamfieldsError(f"{path}: images must be (N, H, W, 3) with N, H, W > 0, got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise CamfieldsError(f"{path}: images must be floats in [0, 1], got {images.dtype}")
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if not finite.all():
        raise CamfieldsError(f"{path} frame {int(np.argmin(finite))}: the image holds NaN or infinite pixels")
    if images.min() < 0 or images.max() > 1:
        raise CamfieldsError(f"{path}: images must be floats in [0, 1], got {images.min():.4g} to {images.max():.4g}")


def load_dynamic_npz(path: Path, split: str, downscale_factor: int = 1) -> CameraSplit:
    """One split of a packed dynamic scene (images area-downscaled, focal scaled to match).

    Every array is checked first: a bad shape, type or value (NaN or infinity included) is one
    sentence naming the file and, for per-image arrays, the first bad frame.
    """
    path = Path(path)
    data = _read_npz(path)
    images = _numeric(data, "images", path)
    _check_images(images, path)
    count = len(images)
    poses = _numeric(data, "poses", path)
    if poses.ndim != 3 or len(poses) != count or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise CamfieldsError(
            f"{path}: poses must be ({count}, 4, 4) or ({count}, 3, 4) for {count} images, got {poses.shape}"
        )
    poses = torch.from_numpy(poses.astype(np.float64))  # any numeric type or byte order
    poses = torch.stack([check_pose(pose, "pose", f"{path} frame {i}") for i, pose in enumerate(poses)])
    times = check_times(torch.from_numpy(_numeric(data, "times", path).astype(np.float64)), count, str(path))
    focal = _numeric(data, "focal", path).astype(np.float64).reshape(-1)
    if focal.size != 1 or not (np.isfinite(focal[0]) and focal[0] > 0):
        raise CamfieldsError(f"{path}: focal must be one finite positive number of pixels, got {data['focal']}")
    labels = data.get("split")
    if labels is None:
        labels = np.array(["train"] * count)
    elif labels.shape != (count,):
        raise CamfieldsError(f"{path}: split must hold one label per image, got shape {labels.shape}")
    chosen = np.flatnonzero(labels.astype(str) == split)
    if not len(chosen):
        found = sorted(set(labels.astype(str).tolist()))
        raise CamfieldsError(f"{path} has no '{split}' images (its splits: {', '.join(found)})")
    pixels = torch.stack([downscale(torch.from_numpy(images[i].astype(np.float32)), downscale_factor) for i in chosen])
    return CameraSplit(
        pixels,
        poses[torch.from_numpy(chosen)],
        float(focal[0]) * pixels.shape[2] / images.shape[2],
        [f"{split}_{i:03d}" for i in chosen],
        times[torch.from_numpy(chosen)],
    )


def load_dynamic(
    path: Path, split: str, downscale_factor: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> CameraSplit:
    """One split of a dynamic scene: a D-NeRF folder or a packed ``.npz`` (its background is baked in)."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_dynamic_npz(path, split, downscale_factor)
    scene = load_blender(path, split, downscale_factor, background)
    if scene.times is None:
        raise CamfieldsError(f"{path}/transforms_{split}.json has no 'time' on its frames: not a dynamic scene")
    return scene
