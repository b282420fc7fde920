"""Pinhole camera rays in the Blender / OpenGL convention.

A camera-to-world matrix ``c2w`` (4, 4) maps camera coordinates to the world; the camera
looks along its -z axis, with +x to the right of the image and +y up. Pixel (row i,
column j) is sampled at its centre.

Forward-facing scenes (LLFF captures, recentred so that the cameras look down -z) are sampled in
normalised device coordinates (``ndc_rays``, ``NDCCamera``), as the original NeRF does: the
frustum from the near plane to infinity becomes the cube [-1, 1]^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from camfields.errors import CamfieldsError

#: the largest direction z component of a ray in ``ndc_rays``: rays not pointing towards -z are bent
#: to this value, which sends them far outside the NDC cube (they render as background)
NDC_MAX_DZ = -1e-6


def focal_from_fov(width: int, camera_angle_x: float) -> float:
    """Focal length in pixels of a camera whose horizontal field of view is ``camera_angle_x``."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)


def camera_rays(c2w: torch.Tensor, height: int, width: int, focal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions of every pixel's ray.

    Args:
        c2w: (4, 4) or (3, 4) camera-to-world matrix.
        height, width: image size in pixels.
        focal: focal length in pixels.
    Returns:
        origins (H * W, 3) and directions (H * W, 3), row-major over pixels.
    """
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=c2w.dtype, device=c2w.device),
        torch.arange(width, dtype=c2w.dtype, device=c2w.device),
        indexing="ij",
    )
    camera_dirs = torch.stack(
        [(cols + 0.5 - 0.5 * width) / focal, -(rows + 0.5 - 0.5 * height) / focal, -torch.ones_like(cols)], dim=-1
    ).reshape(-1, 3)
    directions = camera_dirs @ c2w[:3, :3].T
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return c2w[:3, 3].expand_as(directions).contiguous(), directions


def ndc_rays(
    origins: torch.Tensor, directions: torch.Tensor, height: int, width: int, focal: float, near: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays in normalised device coordinates (NeRF, Mildenhall et al. 2020, appendix C).

    Each ray is first moved along itself to the near plane z = -near (t = -(near + o_z) / d_z), then
    projected with the camera of size ``height`` x ``width`` and ``focal`` (pixels):

        o' = (-2f/W * o_x / o_z,  -2f/H * o_y / o_z,  1 + 2 near / o_z)
        d' = (-2f/W * (d_x / d_z - o_x / o_z),  -2f/H * (d_y / d_z - o_y / o_z),  -2 near / o_z)

    so that a world point (x, y, z) with z <= -near lies at (-2f/W x/z, -2f/H y/z, 1 + 2 near/z) on
    the NDC ray o' + t' d', t' in [0, 1) from the near plane (NDC z = -1) to infinity (NDC z = 1). The
    pixels of that camera span x', y' in [-1, 1]. Directions are not normalised (the NeRF convention).
    Rays must point towards -z (d_z < 0); others are bent to d_z = ``NDC_MAX_DZ`` and leave the cube.

    Args:
        origins, directions: (..., 3) world rays (directions of any length).
        height, width, focal: the camera defining the projection (pixels).
        near: the world depth of the near plane (> 0).
    Returns:
        NDC origins (..., 3), on the plane z' = -1, and NDC directions (..., 3).
    """
    dz = directions[..., 2].clamp(max=NDC_MAX_DZ)
    directions = torch.cat([directions[..., :2], dz[..., None]], dim=-1)
    t = -(near + origins[..., 2]) / dz
    o = origins + t[..., None] * directions
    ox, oy, oz = o.unbind(-1)
    dx, dy = directions[..., 0], directions[..., 1]
    ax, ay = -2.0 * focal / width, -2.0 * focal / height
    ndc_origins = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    ndc_directions = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1)
    return ndc_origins, ndc_directions


@dataclass(frozen=True)
class NDCCamera:
    """The camera (training image size, focal in pixels) and near plane that define a scene's NDC rays."""

    height: int
    width: int
    focal: float
    near: float = 1.0

    def check(self, where: str) -> None:
        """One sentence naming ``where`` unless the size is positive integers and focal and near positive numbers."""
        sides = (self.height, self.width)
        numbers = (self.focal, self.near)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sides) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in numbers
        ):
            raise CamfieldsError(
                f"{where}: NDC rays need a positive integer height and width and a positive focal and near, "
                f"got {sides} and {numbers}"
            )

    def __call__(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays (R, 3) as NDC rays (R, 3) with unit directions (distances along them are NDC lengths)."""
        o, d = ndc_rays(origins, directions, self.height, self.width, self.focal, self.near)
        return o, d / d.norm(dim=-1, keepdim=True)


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world matrix (4, 4) of a camera at ``eye`` (3,) looking at ``target`` (default: origin).

    ``up`` (default +z, the Blender convention) fixes the roll; it must not be parallel to
    the viewing direction.
    """
    target = torch.zeros_like(eye) if target is None else target
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device) if up is None else up
    back = eye - target
    back = back / back.norm()
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(back, right), back, eye
    return c2w


def orbit_poses(poses: torch.Tensor, frames: int) -> torch.Tensor:
    """``frames`` camera-to-world matrices (F, 4, 4) on a circle around the z axis, looking at the origin.

    The circle has the mean distance from the z axis and the mean height of the cameras in
    ``poses`` (N, 4, 4) (``orbit_of``): a turntable of novel views at the training cameras' elevation.
    """
    return orbit(*orbit_of(poses), frames).to(poses.dtype)


def forward_circle(radius: float, height: float, frames: int) -> torch.Tensor:
    """``frames`` camera-to-world matrices (F, 4, 4) on a circle of ``radius`` around the z axis at
    ``height``, evenly spaced from angle 0, all looking down -z (the average view of a recentred
    forward-facing capture): a path of novel views with parallax for NDC scenes."""
    angles = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    poses = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    poses[:, 0, 3], poses[:, 1, 3], poses[:, 2, 3] = radius * angles.cos(), radius * angles.sin(), height
    return poses.float()


def orbit_of(poses: torch.Tensor) -> tuple[float, float]:
    """(radius, height) of the cameras ``poses`` (N, 4, 4): their mean distance from the z axis and mean z."""
    centres = poses[:, :3, 3].double()
    return float(centres[:, :2].norm(dim=-1).mean()), float(centres[:, 2].mean())


def orbit(radius: float, height: float, frames: int) -> torch.Tensor:
    """``frames`` camera-to-world matrices (F, 4, 4) at ``height`` on a circle of ``radius`` around the
    z axis, evenly spaced from angle 0, each looking at the origin."""
    angles = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    return torch.stack(
        [look_at(torch.tensor([radius * math.cos(a), radius * math.sin(a), height])) for a in angles.tolist()]
    ).float()
