"""Posed images over time: D-NeRF folders and packed ``.npz`` files.

A D-NeRF folder is a Blender scene (``io.blender``) whose frames carry a ``time`` in [0, 1].
A packed ``.npz`` holds ``images`` (N, H, W, 3) float in [0, 1], ``poses`` (N, 4, 4)
camera-to-world (OpenGL convention), ``times`` (N,) in [0, 1], ``focal`` (pixels) and an
optional ``split`` array of 'train' / 'val' / 'test' strings (without it, every image is
training data).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from camfields.errors import CamfieldsError
from camfields.io.blender import CameraSplit, check_times, load_blender
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


def load_dynamic_npz(path: Path, split: str, downscale_factor: int = 1) -> CameraSplit:
    """One split of a packed dynamic scene (images area-downscaled, focal scaled to match)."""
    path = Path(path)
    data = _read_npz(path)
    images, poses = data["images"], data["poses"]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CamfieldsError(f"{path}: images must be (N, H, W, 3), got {images.shape}")
    if poses.shape != (len(images), 4, 4):
        raise CamfieldsError(f"{path}: poses must be ({len(images)}, 4, 4) for {len(images)} images, got {poses.shape}")
    if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
        raise CamfieldsError(f"{path}: images must be floats in [0, 1]")
    times = check_times(torch.from_numpy(np.asarray(data["times"], dtype=np.float32)), len(images), str(path))
    focal = np.asarray(data["focal"], dtype=np.float64).reshape(-1)
    if focal.size != 1 or not focal[0] > 0:
        raise CamfieldsError(f"{path}: focal must be one positive number of pixels, got {data['focal']}")
    labels = data.get("split")
    if labels is None:
        labels = np.array(["train"] * len(images))
    elif labels.shape != (len(images),):
        raise CamfieldsError(f"{path}: split must hold one label per image, got shape {labels.shape}")
    chosen = np.flatnonzero(labels.astype(str) == split)
    if not len(chosen):
        found = sorted(set(labels.astype(str).tolist()))
        raise CamfieldsError(f"{path} has no '{split}' images (its splits: {', '.join(found)})")
    pixels = torch.stack([downscale(torch.from_numpy(images[i]).float(), downscale_factor) for i in chosen])
    return CameraSplit(
        pixels,
        torch.from_numpy(poses[chosen]).float(),
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
