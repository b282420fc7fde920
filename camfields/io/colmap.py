"""COLMAP captures: a sparse model (``sparse/0/`` or ``sparse/``) plus the photos in ``images/``.

The model is read by a small reader of COLMAP's documented text and binary formats
(https://colmap.github.io/format.html); ``pycolmap`` reads them too but is a large binary wheel, so
camfields does not depend on it. Only ``cameras.{bin,txt}`` and ``images.{bin,txt}`` are read (the
binary file when both exist); ``points3D`` and COLMAP 4's ``rigs`` / ``frames`` are ignored.

- ``cameras.txt``: per line ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``; ``cameras.bin``: a uint64
  count, then per camera int32 id, int32 model id, uint64 width, uint64 height and the model's float64
  parameters. All little-endian.
- ``images.txt``: two lines per image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` and its 2D
  points (skipped); ``images.bin``: a uint64 count, then per image int32 id, float64 qw qx qy qz tx ty
  tz, int32 camera id, the NUL-terminated name, a uint64 point count and 24 bytes per point (skipped).
  Every count is checked against the bytes left in the file before it is used.

(qw, qx, qy, qz) and t give the world-to-camera transform x_cam = R x_world + t in OpenCV camera axes
(x right, y down, z forward). The camera-to-world pose is [R^T | -R^T t]; negating its y and z columns
gives the OpenGL convention of ``render.rays`` (columns [right, up, back], the camera looking along -z).
Poses are otherwise left as recorded: no recentring, no rescaling.

Camera models: ``SIMPLE_PINHOLE``, ``PINHOLE``, and ``SIMPLE_RADIAL``, ``RADIAL``, ``OPENCV`` when their
distortion parameters are all zero (e.g. after COLMAP's ``image_undistorter``, which writes ``PINHOLE``);
the focal lengths and principal point are checked as for nerfstudio captures (``io.nerfstudio``: fx and
fy within 0.5 %, the principal point within 0.5 px of the centre; photos of different focal lengths keep
each their own). Anything else is refused in one sentence naming the file and the camera or image.

The images are ``images/<NAME>`` of the registered images, sorted by name (photos the model does not
register are ignored), and the camera's width and height must be the file's size. For a downscale factor
k > 1 the photos come from ``images_<k>/`` when the folder exists (each within 1 px of the camera's size
divided by k, as Mip-NeRF 360's folders are), else from ``images/`` area-downscaled by k; the focal is
scaled to the width loaded. Split as the other captures: every 8th image (index % 8 == 0) is held out for
"val" and "test", the rest is "train".
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from camfields.errors import CamfieldsError, first_line
from camfields.io.blender import CameraSplit, check_pose, frame_image, frame_pixels
from camfields.io.images import downscale
from camfields.io.llff import split_indices
from camfields.io.nerfstudio import ViewStack, check_undistorted, pinhole_focal

#: the camera models read (COLMAP's model id: name, parameter names); others are refused
MODELS = {
    0: ("SIMPLE_PINHOLE", ("f", "cx", "cy")),
    1: ("PINHOLE", ("fx", "fy", "cx", "cy")),
    2: ("SIMPLE_RADIAL", ("f", "cx", "cy", "k")),
    3: ("RADIAL", ("f", "cx", "cy", "k1", "k2")),
    4: ("OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
}
MODEL_IDS = {name: model_id for model_id, (name, _) in MODELS.items()}
#: COLMAP's other models, by id from 5, named in the refusal
OTHER_MODELS = (
    "OPENCV_FISHEYE",
    "FULL_OPENCV",
    "FOV",
    "SIMPLE_RADIAL_FISHEYE",
    "RADIAL_FISHEYE",
    "THIN_PRISM_FISHEYE",
    "RAD_TAN_THIN_PRISM_FISHEYE",
)
#: the parameters that are not distortion coefficients
INTRINSICS = ("f", "fx", "fy", "cx", "cy")
#: the folders searched for a model, in this order
MODEL_FOLDERS = ("sparse/0", "sparse")

_CAMERA = struct.Struct("<iiQQ")
_IMAGE = struct.Struct("<i7di")
_COUNT = struct.Struct("<Q")
_POINT2D_BYTES = 24
_MIN_IMAGE_BYTES = _IMAGE.size + 1 + _COUNT.size  # an empty name's NUL and the point count


class Camera(NamedTuple):
    """A COLMAP camera: model name, image width and height (pixels) and its parameters by name."""

    model: str
    width: int
    height: int
    params: dict[str, float]


class View(NamedTuple):
    """A registered image: its name under ``images/``, camera id, and world-to-camera rotation
    quaternion (w, x, y, z) and translation (3,)."""

    name: str
    camera_id: int
    qvec: np.ndarray
    tvec: np.ndarray


def model_folder(root: Path) -> Path | None:
    """The first of ``root``/sparse/0 and ``root``/sparse holding a ``cameras.bin`` or ``cameras.txt``."""
    for folder in MODEL_FOLDERS:
        if any((root / folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return root / folder
    return None


def _model_file(folder: Path, stem: str) -> Path:
    """``folder``/stem.bin, else ``folder``/stem.txt; one clear error when neither exists."""
    for ext in ("bin", "txt"):
        if (folder / f"{stem}.{ext}").is_file():
            return folder / f"{stem}.{ext}"
    raise CamfieldsError(f"{folder} has no {stem}.bin or {stem}.txt (a COLMAP model needs both cameras and images)")


def _parameter_names(model: str, where: str) -> tuple[str, ...]:
    """The parameter names of a supported camera model; one clear error for any other model."""
    if model not in MODEL_IDS:
        supported = ", ".join(name for name, _ in MODELS.values())
        raise CamfieldsError(
            f"{where}: camera model {model} is not supported; only pinhole cameras ({supported}, "
            "the last three without distortion)"
        )
    return MODELS[MODEL_IDS[model]][1]


def _camera(model: str, width: int, height: int, params: list[float], where: str) -> Camera:
    """A camera of a supported model with ``params`` named, after the size and parameter count checks."""
    names = _parameter_names(model, where)
    if len(params) != len(names):
        raise CamfieldsError(f"{where}: a {model} camera has {len(names)} parameters, got {len(params)}")
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise CamfieldsError(f"{where}: width and height must be positive, got {width}x{height}")
    return Camera(model, width, height, dict(zip(names, params)))


def _add(table: dict, key: int, value: object, what: str, where: str) -> None:
    """``table[key] = value``, with one clear error when ``key`` is already there."""
    if key in table:
        raise CamfieldsError(f"{where}: {what} id {key} appears twice")
    table[key] = value


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """The (line number, stripped text) of the lines of a model text file, comments kept out."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CamfieldsError(f"{path} is not a readable text file ({first_line(e)})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if not line.startswith("#")]


def _read_cameras_text(path: Path) -> dict[int, Camera]:
    cameras: dict[int, Camera] = {}
    for number, line in _text_lines(path):
        if not line:
            continue
        where = f"{path} line {number}"
        fields = line.split()
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = [float(x) for x in fields[4:]]
        except (IndexError, ValueError):
            raise CamfieldsError(f"{where} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...': {line[:60]!r}") from None
        _add(cameras, camera_id, _camera(model, width, height, params, where), "camera", where)
    return cameras


def _read_images_text(path: Path) -> dict[int, View]:
    views: dict[int, View] = {}
    lines = iter(_text_lines(path))
    for number, line in lines:
        if not line:
            continue
        where = f"{path} line {number}"
        fields = line.split(maxsplit=9)
        try:
            image_id, camera_id, name = int(fields[0]), int(fields[8]), fields[9]
            values = np.array([float(x) for x in fields[1:8]])
        except (IndexError, ValueError):
            raise CamfieldsError(
                f"{where} is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME': {line[:60]!r}"
            ) from None
        points_number, points = next(lines, (number + 1, ""))  # the image's 2D points, not needed
        if len(points.split()) % 3:
            raise CamfieldsError(
                f"{path} line {points_number} must hold the 2D points of the image on line {number} "
                "(X Y POINT3D_ID triples, or nothing): every image takes two lines"
            )
        _add(views, image_id, View(name, camera_id, values[:4], values[4:]), "image", where)
    return views


class _Bytes:
    """A binary model file read from the front, every read checked against the bytes left."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def unpack(self, layout: struct.Struct, what: str) -> tuple:
        self.need(layout.size, what)
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def need(self, size: int, what: str) -> None:
        """One clear error unless ``size`` bytes are left for ``what``."""
        if size > len(self.data) - self.offset:
            raise CamfieldsError(
                f"{self.path} ends at byte {len(self.data)} but {what} needs {size} bytes from byte {self.offset} "
                "(a truncated or damaged file)"
            )

    def count(self, record_bytes: int, what: str) -> int:
        """A uint64 count of records of at least ``record_bytes`` each, checked against the bytes left."""
        (count,) = self.unpack(_COUNT, f"the number of {what}")
        self.need(count * record_bytes, f"{count} {what}")
        return count

    def name(self, where: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise CamfieldsError(f"{where}: the image name has no terminating NUL byte before the end of the file")
        raw, self.offset = self.data[self.offset : end], end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise CamfieldsError(f"{where}: the image name {raw[:40]!r} is not UTF-8") from None


def _model_name(model_id: int) -> str:
    """COLMAP's name of a camera model id ("id <n>" when unknown)."""
    if model_id in MODELS:
        return MODELS[model_id][0]
    other = model_id - len(MODELS)
    return OTHER_MODELS[other] if 0 <= other < len(OTHER_MODELS) else f"id {model_id}"


def _read_cameras_binary(path: Path) -> dict[int, Camera]:
    data = _Bytes(path)
    cameras: dict[int, Camera] = {}
    for number in range(data.count(_CAMERA.size, "cameras")):
        where = f"{path} camera {number}"
        camera_id, model_id, width, height = data.unpack(_CAMERA, where)
        name = _model_name(model_id)
        params = list(data.unpack(struct.Struct(f"<{len(_parameter_names(name, where))}d"), where))
        _add(cameras, camera_id, _camera(name, width, height, params, where), "camera", where)
    if data.offset != len(data.data):
        raise CamfieldsError(f"{path} has {len(data.data) - data.offset} bytes after its last camera")
    return cameras


def _read_images_binary(path: Path) -> dict[int, View]:
    data = _Bytes(path)
    views: dict[int, View] = {}
    for number in range(data.count(_MIN_IMAGE_BYTES, "images")):
        where = f"{path} image {number}"
        image_id, *values, camera_id = data.unpack(_IMAGE, where)
        name = data.name(where)
        points = data.count(_POINT2D_BYTES, f"2D points of image {number}")
        data.offset += points * _POINT2D_BYTES
        values = np.array(values)
        _add(views, image_id, View(name, camera_id, values[:4], values[4:]), "image", where)
    if data.offset != len(data.data):
        raise CamfieldsError(f"{path} has {len(data.data) - data.offset} bytes after its last image")
    return views


def read_model(folder: Path) -> tuple[dict[int, Camera], dict[int, View]]:
    """The cameras and registered images (by id) of the COLMAP model in ``folder`` (binary files first)."""
    cameras_path, images_path = _model_file(folder, "cameras"), _model_file(folder, "images")
    read_cameras = _read_cameras_binary if cameras_path.suffix == ".bin" else _read_cameras_text
    read_images = _read_images_binary if images_path.suffix == ".bin" else _read_images_text
    try:
        return read_cameras(cameras_path), read_images(images_path)
    except OSError as e:
        raise CamfieldsError(f"{folder}: a model file is not readable ({first_line(e)})") from None


def opengl_pose(view: View, where: str) -> torch.Tensor:
    """The camera-to-world matrix (4, 4) float32 in the OpenGL convention of a COLMAP image's
    world-to-camera quaternion and translation (OpenCV axes), after one clear error unless both are finite
    and the quaternion is not zero (it is normalized)."""
    if not (np.isfinite(view.qvec).all() and np.isfinite(view.tvec).all()):
        raise CamfieldsError(f"{where}: the pose (qvec, tvec) holds NaN or infinite values")
    norm = float(np.linalg.norm(view.qvec))
    if norm < 1e-8:
        raise CamfieldsError(f"{where}: the rotation quaternion is zero")
    w, x, y, z = view.qvec / norm
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    camera_to_world = np.concatenate([rotation.T * [1.0, -1.0, -1.0], (-rotation.T @ view.tvec)[:, None]], axis=1)
    return check_pose(torch.from_numpy(camera_to_world), "pose", where)


def camera_focal(camera: Camera, where: str) -> float:
    """The one focal length (pixels of the camera's full size) of a supported camera, after the
    distortion, focal and principal point checks."""
    params = camera.params
    check_undistorted({key: value for key, value in params.items() if key not in INTRINSICS}, where)
    fl_x, fl_y = params.get("fx", params.get("f")), params.get("fy", params.get("f"))
    return pinhole_focal(fl_x, fl_y, params["cx"], params["cy"], camera.width, camera.height, where)


def _image_folder(root: Path, downscale_factor: int) -> tuple[Path, int]:
    """The folder to read images from and the factor by which its images are smaller than the cameras."""
    if downscale_factor < 1:
        raise CamfieldsError(f"downscale factor must be a positive integer, got {downscale_factor}")
    ready = root / f"images_{downscale_factor}"
    if downscale_factor > 1 and ready.is_dir():
        return ready, downscale_factor
    if not (root / "images").is_dir():
        raise CamfieldsError(f"{root} has no images/ folder (a COLMAP capture keeps its photos there)")
    return root / "images", 1


def _check_size(pixels: torch.Tensor, camera: Camera, factor: int, where: str) -> None:
    """One clear error unless an image file (H, W, 3) is the camera's size (divided by ``factor``, within 1 px)."""
    height, width = pixels.shape[:2]
    tolerance = 0 if factor == 1 else 1
    if abs(width - camera.width / factor) > tolerance or abs(height - camera.height / factor) > tolerance:
        scaled = "" if factor == 1 else f" / {factor}"
        raise CamfieldsError(
            f"{where}: the image is {width}x{height} but its camera is {camera.width}x{camera.height}{scaled}"
        )


def load_colmap(
    root: Path, split: str, downscale_factor: int = 1, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> CameraSplit:
    """Load one split of a COLMAP capture.

    Args:
        root: the folder holding ``sparse/0/`` (or ``sparse/``) and ``images/``.
        split: "train", or "val" / "test" (both: every 8th registered image in name order).
        downscale_factor: k: read ``images_<k>/`` when it exists, else area-downscale ``images/`` by k.
        background: RGB in [0, 1] that transparent pixels (RGBA files) are composited on.
    Returns:
        images (N, H, W, 3) in [0, 1], OpenGL camera-to-world poses (N, 4, 4), the mean focal in pixels of
        the loaded size, and the image file stems.
    """
    root = Path(root)
    folder = model_folder(root)
    if folder is None:
        raise CamfieldsError(f"{root} has no sparse/0/cameras.bin or .txt, nor sparse/ (is it a COLMAP capture?)")
    cameras, views = read_model(folder)
    if not views:
        raise CamfieldsError(f"{folder}: the model registers no images")
    images_folder, factor = _image_folder(root, downscale_factor)
    order = sorted(views, key=lambda image_id: views[image_id].name)
    bg = torch.tensor(background, dtype=torch.float32)
    stack = ViewStack(str(images_folder))
    for position in split_indices(len(order), split, str(folder)):
        view = views[order[position]]
        where = f"{folder} image {view.name!r}"
        if view.camera_id not in cameras:
            raise CamfieldsError(f"{where}: camera {view.camera_id} is not in the model's cameras")
        camera = cameras[view.camera_id]
        pose = opengl_pose(view, where)
        focal = camera_focal(camera, f"{where} (camera {view.camera_id})")
        path = frame_image(images_folder, {"file_path": view.name}, where)
        pixels = frame_pixels(path, 1, bg, where)
        _check_size(pixels, camera, factor, where)
        try:
            pixels = downscale(pixels, downscale_factor // factor)
        except CamfieldsError as e:
            raise CamfieldsError(f"{where}: {e}") from None
        stack.add(path.stem, pixels, pose, focal * pixels.shape[1] / camera.width)
    return stack.split()
