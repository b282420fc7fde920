"""Pinhole camera rays in the Blender / OpenGL convention.

A camera-to-world matrix ``c2w`` (4, 4) maps camera coordinates to the world; the camera
looks along its -z axis, with +x to the right of the image and +y up. Pixel (row i,
column j) is sampled at its centre.
"""

from __future__ import annotations

import math

import torch


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
