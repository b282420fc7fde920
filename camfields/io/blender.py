"""The Blender "nerf_synthetic" format: ``transforms_{split}.json`` plus RGBA images.

Each JSON holds ``camera_angle_x`` (horizontal field of view, radians) and ``frames``, each
with a ``file_path`` (relative, often without extension) and a 4x4 camera-to-world
``transform_matrix`` in the OpenGL convention (camera looks along -z, y up). The D-NeRF
format is the same with a ``time`` in [0, 1] on every frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from camfields.errors import CamfieldsError
from camfields.io.images import downscale, load_image
from camfields.render.rays import focal_from_fov


class CameraSplit(NamedTuple):
    """Images (N, H, W, 3) in [0, 1] composited on the background, poses (N, 4, 4), focal in
    pixels, a name per image and, for dynamic scenes, times (N,) in [0, 1]."""

    images: torch.Tensor
    poses: torch.Tensor
    focal: float
    names: list[str]
    times: torch.Tensor | None = None


def check_times(times: torch.Tensor, count: int, where: str) -> torch.Tensor:
    """``times`` as float32 (N,), with one clear error unless it holds ``count`` finite values in [0, 1]."""
    times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
    if len(times) != count:
        raise CamfieldsError(f"{where}: {len(times)} times for {count} images")
    if not torch.isfinite(times).all() or times.min() < 0 or times.max() > 1:
        raise CamfieldsError(f"{where}: times must lie in [0, 1], got {times.min():.4g} to {times.max():.4g}")
    return times


def _frame_image(root: Path, frame: dict, where: str) -> Path:
    if "file_path" not in frame:
        raise CamfieldsError(f"{where} has no 'file_path'")
    path = (root / frame["file_path"]).resolve()
    if path.suffix.lower() != ".png" and path.with_suffix(path.suffix + ".png").exists():
        path = path.with_suffix(path.suffix + ".png")
    if not path.exists():
        raise CamfieldsError(f"{where}: image {frame['file_path']} does not exist under {root}")
    return path


def load_blender(
    root: Path, split: str, downscale_factor: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> CameraSplit:
    """Load one split of a Blender scene.

    Args:
        root: the scene folder holding ``transforms_{split}.json``.
        split: "train", "val" or "test".
        downscale_factor: integer area downscale of every image (focal scaled to match).
        background: RGB in [0, 1] that transparent pixels are composited on.
    """
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.exists():
        raise CamfieldsError(f"{root} has no transforms_{split}.json (is it a Blender scene folder?)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CamfieldsError(f"{meta_path} is not valid JSON: {e}") from None
    for key in ("camera_angle_x", "frames"):
        if key not in meta:
            raise CamfieldsError(f"{meta_path} has no '{key}'")
    if not meta["frames"]:
        raise CamfieldsError(f"{meta_path} lists no frames")
    bg = torch.tensor(background, dtype=torch.float32)
    images, poses, names, times = [], [], [], []
    for number, frame in enumerate(meta["frames"]):
        where = f"{meta_path.name} frame {number}"
        path = _frame_image(root, frame, where)
        if "transform_matrix" not in frame:
            raise CamfieldsError(f"{where} has no 'transform_matrix'")
        pose = torch.tensor(frame["transform_matrix"], dtype=torch.float32)
        if pose.shape != (4, 4):
            raise CamfieldsError(f"{where}: transform_matrix must be 4x4, got {list(pose.shape)}")
        pixels = downscale(load_image(path).pixels, downscale_factor)
        if pixels.shape[2] == 4:
            pixels = pixels[..., :3] * pixels[..., 3:] + bg * (1.0 - pixels[..., 3:])
        elif pixels.shape[2] != 3:
            raise CamfieldsError(f"{where}: image {path.name} has {pixels.shape[2]} channels; expected RGB or RGBA")
        if images and pixels.shape != images[0].shape:
            raise CamfieldsError(
                f"{meta_path.name}: images of mixed sizes: {names[0]} is {images[0].shape[1]}x{images[0].shape[0]} "
                f"but {path.stem} is {pixels.shape[1]}x{pixels.shape[0]}"
            )
        images.append(pixels)
        poses.append(pose)
        names.append(path.stem)
        if "time" in frame:
            if not isinstance(frame["time"], (int, float)):
                raise CamfieldsError(f"{where}: 'time' must be a number, got {frame['time']!r}")
            times.append(float(frame["time"]))
    if times and len(times) != len(images):
        raise CamfieldsError(f"{meta_path.name}: {len(times)} of {len(images)} frames have a 'time'; all or none must")
    width = images[0].shape[1]
    return CameraSplit(
        torch.stack(images),
        torch.stack(poses),
        focal_from_fov(width, float(meta["camera_angle_x"])),
        names,
        check_times(torch.tensor(times), len(images), meta_path.name) if times else None,
    )
