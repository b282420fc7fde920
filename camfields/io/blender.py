"""The Blender "nerf_synthetic" format: ``transforms_{split}.json`` plus RGBA images.

Each JSON holds ``camera_angle_x`` (horizontal field of view, radians, in (0, pi)) and
``frames``, a list of objects each with a ``file_path`` (relative to the scene folder and
inside it, often without extension; symlinks in the folder are followed) and a 4x4 (or 3x4,
completed with [0, 0, 0, 1]) camera-to-world ``transform_matrix`` in the OpenGL convention
(camera looks along -z, y up).
The D-NeRF format is the same with a ``time`` in [0, 1] on every frame. Every value is
checked before use: a bad one is one sentence naming the file and the frame.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from camfields.errors import CamfieldsError, first_line
from camfields.io.images import downscale, load_image
from camfields.render.rays import focal_from_fov


class CameraSplit(NamedTuple):
    """Images (N, H, W, 3) in [0, 1] composited on the background, poses (N, 4, 4), focal in
    pixels (the mean when the views differ), a name per image, for dynamic scenes times (N,) in
    [0, 1] and, for captures whose photos have different focal lengths, each view's (N,) in pixels."""

    images: torch.Tensor
    poses: torch.Tensor
    focal: float
    names: list[str]
    times: torch.Tensor | None = None
    focals: torch.Tensor | None = None

    def view_focal(self, index: int) -> float:
        """The focal length in pixels of view ``index``."""
        return self.focal if self.focals is None else float(self.focals[index])


def shown(value: object) -> str:
    """A JSON value as quoted in an error message: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def json_number(value: object, what: str, where: str) -> float:
    """A JSON number (int or float, not a bool) as a float: inf when too large for one, NaN kept."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CamfieldsError(f"{where}: {what} must be a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_times(times: torch.Tensor, count: int, where: str) -> torch.Tensor:
    """``times`` as float32 (N,), with one clear error (naming ``where`` and the first bad frame)
    unless it holds ``count`` finite values in [0, 1]."""
    times = torch.as_tensor(times, dtype=torch.float32).reshape(-1)
    if len(times) != count:
        raise CamfieldsError(f"{where}: {len(times)} times for {count} images")
    bad = (~torch.isfinite(times) | (times < 0) | (times > 1)).nonzero()
    if len(bad):
        frame = int(bad[0])
        raise CamfieldsError(f"{where} frame {frame}: time must be a finite number in [0, 1], got {times[frame]:.4g}")
    return times


def _check_pose_shape(shape: tuple[int, ...], what: str, where: str) -> None:
    """One clear error unless ``shape`` is (4, 4) or (3, 4)."""
    if shape not in ((4, 4), (3, 4)):
        raise CamfieldsError(f"{where}: {what} must be 4x4 or 3x4, got {'x'.join(map(str, shape)) or 'a scalar'}")


def check_pose(pose: torch.Tensor, what: str, where: str) -> torch.Tensor:
    """A camera-to-world matrix (4, 4) or (3, 4) as float32 (4, 4) (a 3x4 gets the row [0, 0, 0, 1]),
    with one clear error unless it has one of those shapes and only finite entries."""
    _check_pose_shape(tuple(pose.shape), what, where)
    pose = pose.float()
    if not torch.isfinite(pose).all():
        raise CamfieldsError(f"{where}: {what} holds NaN or infinite values (or values too large for float32)")
    if len(pose) == 3:
        pose = torch.cat([pose, torch.tensor([[0.0, 0.0, 0.0, 1.0]])])
    return pose


def json_pose(value: object, where: str) -> torch.Tensor:
    """A frame's ``transform_matrix`` (a list of 4 or 3 rows of 4 numbers) as float32 (4, 4)."""
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise CamfieldsError(f"{where}: transform_matrix must be a list of rows of numbers, got {shown(value)}")
    lengths = sorted({len(row) for row in value})
    if len(lengths) != 1:
        raise CamfieldsError(
            f"{where}: transform_matrix has rows of different lengths {lengths}; it must be 4x4 or 3x4"
        )
    _check_pose_shape((len(value), lengths[0]), "transform_matrix", where)
    rows = [
        [json_number(x, f"transform_matrix[{r}][{c}]", where) for c, x in enumerate(row)] for r, row in enumerate(value)
    ]
    return check_pose(torch.tensor(rows, dtype=torch.float64), "transform_matrix", where)


def frame_image(root: Path, frame: dict, where: str) -> Path:
    """The image file of a frame: its ``file_path`` (``.png`` added when missing), which must name a file
    inside ``root``. The check is on the path as written ('..' resolved, symlinks not): a symlink placed
    in the folder is followed wherever it leads, as a folder of links to another scene's images needs."""
    if "file_path" not in frame:
        raise CamfieldsError(f"{where} has no 'file_path'")
    name = frame["file_path"]
    if not isinstance(name, str) or not name:
        raise CamfieldsError(f"{where}: file_path must be a non-empty string, got {shown(name)}")
    base = Path(os.path.normpath(root.absolute()))
    path = Path(os.path.normpath(base / name))
    if path.suffix.lower() != ".png" and path.name and path.with_suffix(path.suffix + ".png").exists():
        path = path.with_suffix(path.suffix + ".png")
    if path == base or not path.is_relative_to(base):
        raise CamfieldsError(f"{where}: file_path {name!r} leads outside the scene folder {root}")
    try:
        path = path.resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte
        raise CamfieldsError(f"{where}: file_path {name!r} is not a usable path ({first_line(e)})") from None
    if not path.exists():
        raise CamfieldsError(f"{where}: image {name} does not exist under {root}")
    return path


def frame_pixels(path: Path, downscale_factor: int, background: torch.Tensor, where: str) -> torch.Tensor:
    """A frame's image (H, W, 3) in [0, 1], RGBA composited on ``background`` (3,); errors name the frame."""
    try:
        pixels = downscale(load_image(path).pixels, downscale_factor)
    except CamfieldsError as e:
        raise CamfieldsError(f"{where}: {e}") from None
    if pixels.shape[2] == 4:
        return pixels[..., :3] * pixels[..., 3:] + background * (1.0 - pixels[..., 3:])
    if pixels.shape[2] != 3:
        raise CamfieldsError(f"{where}: image {path.name} has {pixels.shape[2]} channels; expected RGB or RGBA")
    return pixels


def read_json(path: Path) -> object:
    """The JSON value held in the file ``path``; one clear error naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CamfieldsError(f"{path} is not valid JSON: {first_line(e)}") from None


def _read_meta(meta_path: Path) -> tuple[float, list[dict]]:
    """``camera_angle_x`` (radians, in (0, pi)) and the frames (a non-empty list of objects) of a transforms file."""
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise CamfieldsError(
            f"{meta_path} must hold a JSON object with 'camera_angle_x' and 'frames', got {shown(meta)}"
        )
    for key in ("camera_angle_x", "frames"):
        if key not in meta:
            raise CamfieldsError(f"{meta_path} has no '{key}'")
    fov = json_number(meta["camera_angle_x"], "camera_angle_x", str(meta_path))
    if not 0 < fov < math.pi:
        raise CamfieldsError(f"{meta_path}: camera_angle_x must be an angle in (0, pi) radians, got {fov:.6g}")
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise CamfieldsError(f"{meta_path}: 'frames' must be a list of frame objects, got {shown(frames)}")
    if not frames:
        raise CamfieldsError(f"{meta_path} lists no frames")
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise CamfieldsError(f"{meta_path.name} frame {number} must be an object, got {shown(frame)}")
    return fov, frames


class Cameras(NamedTuple):
    """The cameras of a transforms file: horizontal field of view (radians), camera-to-world poses
    (N, 4, 4), a name per frame (its image's stem) and, for a dynamic scene, times (N,) in [0, 1]."""

    fov: float
    poses: torch.Tensor
    names: list[str]
    times: torch.Tensor | None


def _cameras(meta_path: Path) -> tuple[Cameras, list[dict]]:
    """The checked cameras of a transforms file and its frame objects."""
    fov, frames = _read_meta(meta_path)
    poses, names, times = [], [], []
    for number, frame in enumerate(frames):
        where = f"{meta_path.name} frame {number}"
        if "transform_matrix" not in frame:
            raise CamfieldsError(f"{where} has no 'transform_matrix'")
        poses.append(json_pose(frame["transform_matrix"], where))
        names.append(Path(str(frame.get("file_path", f"view_{number:03d}"))).stem)
        if "time" in frame:
            times.append(json_number(frame["time"], "'time'", where))
    if times and len(times) != len(frames):
        raise CamfieldsError(f"{meta_path.name}: {len(times)} of {len(frames)} frames have a 'time'; all or none must")
    checked = check_times(torch.tensor(times), len(frames), meta_path.name) if times else None
    return Cameras(fov, torch.stack(poses), names, checked), frames


def read_cameras(meta_path: Path) -> Cameras:
    """The cameras of a Blender ``transforms_*.json`` file alone (its images are not read): to render
    a fitted scene from the views of a split."""
    if not Path(meta_path).is_file():
        raise CamfieldsError(f"{meta_path} is not a file; give a transforms_*.json of a Blender scene")
    return _cameras(Path(meta_path))[0]


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
    cameras, frames = _cameras(meta_path)
    bg = torch.tensor(background, dtype=torch.float32)
    images, names = [], []
    for number, frame in enumerate(frames):
        where = f"{meta_path.name} frame {number}"
        path = frame_image(root, frame, where)
        pixels = frame_pixels(path, downscale_factor, bg, where)
        if images and pixels.shape != images[0].shape:
            raise CamfieldsError(
                f"{meta_path.name}: images of mixed sizes: {names[0]} is {images[0].shape[1]}x{images[0].shape[0]} "
                f"but {path.stem} is {pixels.shape[1]}x{pixels.shape[0]}"
            )
        images.append(pixels)
        names.append(path.stem)
    width = images[0].shape[1]
    return CameraSplit(torch.stack(images), cameras.poses, focal_from_fov(width, cameras.fov), names, cameras.times)
