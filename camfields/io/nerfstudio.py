"""nerfstudio / Instant-NGP captures: one ``transforms.json`` for all frames.

The file holds ``frames``, each with a ``file_path`` (relative to the folder and inside it) and a 4x4
(or 3x4) OpenGL camera-to-world ``transform_matrix``, as in the Blender format (``io.blender``, whose
checks apply). The intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` (pixels of the image
files), ``camera_model`` and the distortion coefficients ``k1 k2 k3 k4 p1 p2`` sit at the top level or
in a frame (the frame's value wins). Instant-NGP's ``camera_angle_x`` / ``camera_angle_y`` stand in for
a missing ``fl_x`` / ``fl_y``; a missing ``fl_y`` is ``fl_x``, a missing ``cx``, ``cy`` the image centre
and a missing ``w``, ``h`` the image's size.

``render.rays`` has one focal length per view and the principal point at the image centre, without
distortion. What it cannot represent is refused, one sentence naming the file and the frame:
``fl_x`` and ``fl_y`` more than 0.5 % apart, a principal point more than 0.5 px off the centre,
a non-zero distortion coefficient, a camera model other than a pinhole (``OPENCV``, ``PINHOLE``).
Frames whose focal lengths differ (more than 0.5 % from their mean) keep each their own. Images are
area-downscaled by the downscale factor and the focal scaled to match.

The frames are sorted by ``file_path`` (as nerfstudio does) and split as LLFF captures are: every 8th
(index % 8 == 0) is held out for "val" and "test", the others are "train". Split lists in the file
(``train_filenames`` ...) are not read.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from camfields.errors import CamfieldsError
from camfields.io.blender import CameraSplit, frame_image, frame_pixels, json_number, json_pose, read_json, shown
from camfields.io.images import downscale
from camfields.io.llff import split_indices
from camfields.render.rays import focal_from_fov

#: relative difference allowed between fl_x and fl_y; views whose focal lies further from their mean keep their own
FOCAL_TOLERANCE = 0.005
#: pixels the principal point may lie off the image centre
CENTRE_TOLERANCE = 0.5
DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")
PINHOLE_MODELS = ("OPENCV", "PINHOLE")


def _read_frames(path: Path) -> tuple[dict, list[dict]]:
    """The top-level object and its frames (a non-empty list of objects) of ``transforms.json``."""
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise CamfieldsError(f"{path} must hold a JSON object with 'frames', got {shown(meta)}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise CamfieldsError(f"{path} must list its frames under 'frames' (a non-empty list), got {shown(frames)}")
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise CamfieldsError(f"{path.name} frame {number} must be an object, got {shown(frame)}")
    return meta, frames


def _focal(meta: dict, frame: dict, width: float, height: float, where: str) -> float:
    """The frame's one focal length in pixels of its image file, after the pinhole checks."""

    def number(key: str) -> float | None:
        value = frame.get(key, meta.get(key))
        return None if value is None else json_number(value, key, where)

    model = frame.get("camera_model", meta.get("camera_model", "OPENCV"))
    if model not in PINHOLE_MODELS:
        raise CamfieldsError(
            f"{where}: camera_model {shown(model)} is not supported; only pinhole cameras ({', '.join(PINHOLE_MODELS)})"
        )
    check_undistorted({key: number(key) or 0.0 for key in DISTORTION}, where)

    def from_angle(key: str, size: float) -> float | None:
        angle = number(key)
        if angle is not None and not 0 < angle < math.pi:
            raise CamfieldsError(f"{where}: {key} must be an angle in (0, pi) radians, got {angle:.6g}")
        return None if angle is None else focal_from_fov(size, angle)

    fl_x, fl_y = number("fl_x"), number("fl_y")
    fl_x = from_angle("camera_angle_x", width) if fl_x is None else fl_x
    if fl_x is None:
        raise CamfieldsError(
            f"{where} has no focal length: give fl_x (or camera_angle_x) at the top level or per frame"
        )
    fl_y = (from_angle("camera_angle_y", height) or fl_x) if fl_y is None else fl_y
    cx, cy = number("cx"), number("cy")
    cx, cy = width / 2 if cx is None else cx, height / 2 if cy is None else cy
    return pinhole_focal(fl_x, fl_y, cx, cy, width, height, where)


def check_undistorted(coefficients: dict[str, float], where: str) -> None:
    """One clear error, naming ``where`` and the coefficients, unless every distortion coefficient is 0."""
    distorted = {key: value for key, value in coefficients.items() if value}
    if distorted:
        listed = ", ".join(f"{key} = {value:.4g}" for key, value in distorted.items())
        raise CamfieldsError(f"{where}: distortion {listed} is not supported; undistort the images first")


def pinhole_focal(fl_x: float, fl_y: float, cx: float, cy: float, width: float, height: float, where: str) -> float:
    """The one focal length (pixels) of a pinhole camera with focal lengths ``fl_x``, ``fl_y`` and principal
    point (``cx``, ``cy``) on a ``width`` x ``height`` image: their mean, after one clear error unless both are
    positive and finite, within 0.5 % of each other, and the principal point within 0.5 px of the centre."""
    if not (0 < fl_x < math.inf and 0 < fl_y < math.inf):
        raise CamfieldsError(
            f"{where}: focal lengths must be positive finite numbers, got fl_x {fl_x:.6g}, fl_y {fl_y:.6g}"
        )
    if abs(fl_x - fl_y) > FOCAL_TOLERANCE * fl_x:
        raise CamfieldsError(
            f"{where}: fl_x {fl_x:.6g} and fl_y {fl_y:.6g} differ by more than 0.5 %; camfields' cameras have one focal"
        )
    if not (abs(cx - width / 2) <= CENTRE_TOLERANCE and abs(cy - height / 2) <= CENTRE_TOLERANCE):
        raise CamfieldsError(
            f"{where}: principal point ({cx:.6g}, {cy:.6g}) is more than 0.5 px off the image centre "
            f"({width / 2:g}, {height / 2:g}); camfields' cameras look through the centre"
        )
    return 0.5 * (fl_x + fl_y)


def _size(meta: dict, frame: dict, pixels: torch.Tensor, where: str) -> tuple[float, float]:
    """The frame's (w, h): as given (which must be the image file's size) or the image file's size."""
    height, width = pixels.shape[:2]
    for key, size in (("w", width), ("h", height)):
        value = frame.get(key, meta.get(key))
        if value is not None and json_number(value, key, where) != size:
            raise CamfieldsError(f"{where}: the image is {width}x{height} but its {key} is {shown(value)}")
    return float(width), float(height)


class ViewStack:
    """The views of one split as a capture loader reads them, one at a time, images of one size;
    ``split`` stacks them, with their mean focal, and each view's focal when some lies more than
    0.5 % from that mean (photos zoomed differently). ``folder`` names the images in the mixed-size error."""

    def __init__(self, folder: str):
        self.folder = folder
        self.images: list[torch.Tensor] = []
        self.poses: list[torch.Tensor] = []
        self.focals: list[float] = []
        self.names: list[str] = []

    def add(self, name: str, pixels: torch.Tensor, pose: torch.Tensor, focal: float) -> None:
        """Append a view (pixels (H, W, 3), pose (4, 4), focal in pixels at its loaded width)."""
        if self.images and pixels.shape != self.images[0].shape:
            first = self.images[0].shape
            raise CamfieldsError(
                f"{self.folder}: images of mixed sizes: {self.names[0]} is {first[1]}x{first[0]} "
                f"but {name} is {pixels.shape[1]}x{pixels.shape[0]}"
            )
        self.images.append(pixels)
        self.poses.append(pose)
        self.focals.append(focal)
        self.names.append(name)

    def split(self) -> CameraSplit:
        focals = torch.tensor(self.focals, dtype=torch.float64)
        mean = float(focals.mean())
        differ = bool(((focals - mean).abs() > FOCAL_TOLERANCE * mean).any())
        images, poses = torch.stack(self.images), torch.stack(self.poses)
        return CameraSplit(images, poses, mean, self.names, focals=focals.float() if differ else None)


def load_transforms(
    root: Path, split: str, downscale_factor: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> CameraSplit:
    """Load one split of a nerfstudio / Instant-NGP capture.

    Args:
        root: the folder holding ``transforms.json``.
        split: "train", or "val" / "test" (both: every 8th frame in file-name order).
        downscale_factor: integer area downscale of every image (focal scaled to match).
        background: RGB in [0, 1] that transparent pixels are composited on.
    Returns:
        images (N, H, W, 3) in [0, 1], OpenGL camera-to-world poses (N, 4, 4), the mean focal in
        pixels of the loaded size, and the image file stems.
    """
    root = Path(root)
    path = root / "transforms.json"
    if not path.is_file():
        raise CamfieldsError(f"{root} has no transforms.json (is it a nerfstudio or Instant-NGP capture folder?)")
    meta, frames = _read_frames(path)
    order = sorted(range(len(frames)), key=lambda number: str(frames[number].get("file_path")))
    bg = torch.tensor(background, dtype=torch.float32)
    views = ViewStack(path.name)
    for position in split_indices(len(frames), split, str(path)):
        number = order[position]
        frame, where = frames[number], f"{path.name} frame {number}"
        image = frame_image(root, frame, where)
        if "transform_matrix" not in frame:
            raise CamfieldsError(f"{where} has no 'transform_matrix'")
        pose = json_pose(frame["transform_matrix"], where)
        pixels = frame_pixels(image, 1, bg, where)
        width, height = _size(meta, frame, pixels, where)
        focal = _focal(meta, frame, width, height, where)
        try:
            pixels = downscale(pixels, downscale_factor)
        except CamfieldsError as e:
            raise CamfieldsError(f"{where}: {e}") from None
        views.add(image.stem, pixels, pose, focal * pixels.shape[1] / width)
    return views.split()
