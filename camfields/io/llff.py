"""LLFF captures: ``poses_bounds.npy`` plus ``images/`` (and pre-downscaled ``images_<k>/`` copies).

``poses_bounds.npy`` holds an (N, 17) float array, one row per image of ``images/`` in the sorted
order of the file names: a row-major 3x5 matrix [R | t | hwf], where R's columns are the camera's
[down, right, back] axes in world coordinates, t its centre and hwf the (height, width, focal in
pixels) of the images in ``images/``, then the near and far depth bounds of the scene in that view.

The loader turns the poses into the OpenGL convention of ``render.rays`` (columns [right, up, back]:
new x = LLFF y, new y = -LLFF x, z kept). By default it leaves them otherwise as recorded; the bounds
are checked (finite, 0 < near < far). With ``forward_facing=True`` it prepares a forward-facing capture
for NDC rays as the original NeRF does (``forward_facing_frame``): the scene is scaled so that the
nearest bound of all views is 1 / ``BOUND_FACTOR`` (the NDC near plane 1 then lies in front of all
content), and the poses are recentred on their average pose (the average camera sits at the origin
looking down -z), both computed over every view so that all splits share them.

For a downscale factor k > 1 the images come from ``images_<k>/`` when the folder exists, else from
``images/`` area-downscaled by k; the focal is scaled to the width actually loaded. The split follows
the published LLFF protocol: every 8th image (index % 8 == 0) is held out for "val" and "test", the
others are "train". Every value is checked before use: a bad one is one sentence naming the file
(and the frame, its row in ``poses_bounds.npy``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from camfields.errors import CamfieldsError, first_line
from camfields.io.blender import CameraSplit, check_pose, frame_pixels
from camfields.io.centring import SceneFrame
from camfields.io.images import list_images

#: every HOLD_OUT-th view (index % HOLD_OUT == 0) is held out for evaluation
HOLD_OUT = 8
SPLITS = ("train", "val", "test")
#: relative difference allowed between the width and height scales of the loaded images
ASPECT_TOLERANCE = 0.01
#: forward-facing scenes are scaled so that their nearest bound is 1 / BOUND_FACTOR (NeRF's bd_factor)
BOUND_FACTOR = 0.75


def split_indices(count: int, split: str, where: str) -> list[int]:
    """Indices (in [0, count)) of the views of ``split``: every 8th view for "val" and "test", the rest for "train"."""
    if split not in SPLITS:
        raise CamfieldsError(f"{where}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    held_out = split != "train"
    indices = [i for i in range(count) if (i % HOLD_OUT == 0) == held_out]
    if not indices:
        raise CamfieldsError(
            f"{where}: {count} views leave none for the {split} split (every {HOLD_OUT}th is held out)"
        )
    return indices


def _read_poses_bounds(path: Path) -> np.ndarray:
    """The checked (N, 17) float64 array of ``poses_bounds.npy``."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CamfieldsError(f"{path} is not a readable .npy file ({first_line(e)})") from None
    if not isinstance(array, np.ndarray) or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise CamfieldsError(f"{path} must hold an array of numbers, got {getattr(array, 'dtype', type(array))}")
    if array.ndim != 2 or array.shape[1] != 17 or len(array) == 0:
        raise CamfieldsError(
            f"{path} must hold an (N, 17) array (a 3x5 pose and near/far bounds per image), got shape {array.shape}"
        )
    array = array.astype(np.float64)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise CamfieldsError(f"{path} frame {int(np.argmin(finite))} holds NaN or infinite values")
    hwf = array[:, 4:15:5]  # column 4 of the 3x5 matrix: height, width, focal
    if (hwf <= 0).any():
        frame = int(np.argmax((hwf <= 0).any(axis=1)))
        raise CamfieldsError(f"{path} frame {frame}: height, width and focal must be positive, got {hwf[frame]}")
    differs = ~np.isclose(hwf, hwf[0], rtol=1e-6, atol=0).all(axis=1)
    if differs.any():
        frame = int(np.argmax(differs))
        raise CamfieldsError(
            f"{path} frame {frame}: height, width, focal {hwf[frame]} differ from frame 0's {hwf[0]}; "
            "one camera for all images is assumed"
        )
    near, far = array[:, 15], array[:, 16]
    bad = ~((near > 0) & (far > near))
    if bad.any():
        frame = int(np.argmax(bad))
        raise CamfieldsError(
            f"{path} frame {frame}: bounds must satisfy 0 < near < far, got {near[frame]}, {far[frame]}"
        )
    return array


def _opengl_pose(row: np.ndarray, where: str) -> torch.Tensor:
    """The camera-to-world matrix (4, 4) in the OpenGL convention of one poses_bounds row (17,)."""
    llff = row[:15].reshape(3, 5)
    down, right, back, centre = (llff[:, c : c + 1] for c in range(4))
    return check_pose(torch.from_numpy(np.concatenate([right, -down, back, centre], axis=1)), "pose", where)


def average_pose(poses: torch.Tensor, where: str = "the poses") -> torch.Tensor:
    """The average camera-to-world matrix (4, 4) of OpenGL ``poses`` (N, 4, 4) (NeRF's ``poses_avg``):
    at the mean centre, looking along the mean viewing axis, its up vector the mean up made orthogonal.
    One sentence naming ``where`` when the cameras have no common viewing axis and up."""
    centre = poses[:, :3, 3].mean(dim=0)
    back, up = poses[:, :3, 2].sum(dim=0), poses[:, :3, 1].sum(dim=0)
    right = torch.linalg.cross(up, back)
    if float(right.norm()) <= 1e-6 * float(up.norm() * back.norm()) or float(back.norm()) <= 1e-6 * len(poses):
        raise CamfieldsError(
            f"{where}: the cameras have no average viewing direction and up vector (not a forward-facing capture)"
        )
    back, right = back / back.norm(), right / right.norm()
    average = torch.eye(4, dtype=poses.dtype)
    average[:3, 0], average[:3, 1], average[:3, 2], average[:3, 3] = (
        right,
        torch.linalg.cross(back, right),
        back,
        centre,
    )
    return average


def forward_facing_frame(poses: torch.Tensor, near: torch.Tensor, where: str = "the poses") -> SceneFrame:
    """The frame that readies OpenGL ``poses`` (N, 4, 4) of a forward-facing capture with near bounds
    ``near`` (N,) > 0 for NDC rays: scale 1 / (min(near) * ``BOUND_FACTOR``), then every pose expressed
    relative to their average pose (``average_pose``, of the scaled poses; computed in float64)."""
    scale = 1.0 / (float(near.min()) * BOUND_FACTOR)
    scaled = poses.to(torch.float64, copy=True)
    scaled[:, :3, 3] *= scale
    average = average_pose(scaled, where)
    return SceneFrame(average[:3, :3].T, average[:3, 3] / scale, scale)


def _read_capture(root: Path) -> tuple[Path, np.ndarray, torch.Tensor]:
    """The path of ``root``'s poses_bounds.npy, its checked (N, 17) rows and their OpenGL poses (N, 4, 4)."""
    path = root / "poses_bounds.npy"
    if not path.is_file():
        raise CamfieldsError(f"{root} has no poses_bounds.npy (is it an LLFF capture folder?)")
    array = _read_poses_bounds(path)
    poses = torch.stack([_opengl_pose(row, f"{path} frame {frame}") for frame, row in enumerate(array)])
    return path, array, poses


def llff_frame(root: Path) -> SceneFrame:
    """The ``forward_facing_frame`` of all the views of the LLFF capture in folder ``root``."""
    path, array, poses = _read_capture(Path(root))
    return forward_facing_frame(poses, torch.from_numpy(array[:, 15]), str(path))


def _image_folder(root: Path, downscale_factor: int) -> tuple[Path, int]:
    """The folder to read images from and the factor still to apply to them."""
    if downscale_factor < 1:
        raise CamfieldsError(f"downscale factor must be a positive integer, got {downscale_factor}")
    ready = root / f"images_{downscale_factor}"
    if downscale_factor > 1 and ready.is_dir():
        return ready, 1
    if not (root / "images").is_dir():
        raise CamfieldsError(f"{root} has no images/ folder (an LLFF capture keeps its photos there)")
    return root / "images", downscale_factor


def load_llff(
    root: Path,
    split: str,
    downscale_factor: int = 1,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    forward_facing: bool = False,
) -> CameraSplit:
    """Load one split of an LLFF capture.

    Args:
        root: the folder holding ``poses_bounds.npy`` and ``images/``.
        split: "train", or "val" / "test" (both: every 8th image).
        downscale_factor: k: read ``images_<k>/`` when it exists, else area-downscale ``images/`` by k.
        background: RGB in [0, 1] that transparent pixels (RGBA files) are composited on.
        forward_facing: scale and recentre the poses for NDC rays (``forward_facing_frame``).
    Returns:
        images (N, H, W, 3) in [0, 1], OpenGL camera-to-world poses (N, 4, 4), the focal in pixels of
        the loaded size, and the image file stems.
    """
    root = Path(root)
    path, array, poses = _read_capture(root)
    folder, factor = _image_folder(root, downscale_factor)
    files = list_images(folder)
    if len(files) != len(array):
        raise CamfieldsError(f"{folder} holds {len(files)} images but {path} has {len(array)} poses")
    bg = torch.tensor(background, dtype=torch.float32)
    frames = split_indices(len(files), split, str(path))
    if forward_facing:
        poses = forward_facing_frame(poses, torch.from_numpy(array[:, 15]), str(path)).apply(poses)
    images = []
    for frame in frames:
        where = f"{files[frame]} (frame {frame})"
        pixels = frame_pixels(files[frame], factor, bg, where)
        if images and pixels.shape != images[0].shape:
            raise CamfieldsError(
                f"{folder}: images of mixed sizes: {files[frame].name} is {pixels.shape[1]}x{pixels.shape[0]} "
                f"but the first is {images[0].shape[1]}x{images[0].shape[0]}"
            )
        images.append(pixels)
    height, width, focal = array[0, 4:15:5]
    scale_x, scale_y = images[0].shape[1] / width, images[0].shape[0] / height
    if abs(scale_x - scale_y) > ASPECT_TOLERANCE * scale_x:
        raise CamfieldsError(
            f"{folder}: images are {images[0].shape[1]}x{images[0].shape[0]} but {path} records "
            f"{width:g}x{height:g} at full size, another shape (rotated or cropped images?)"
        )
    names = [files[frame].stem for frame in frames]
    return CameraSplit(torch.stack(images), poses[frames], float(focal * scale_x), names)
