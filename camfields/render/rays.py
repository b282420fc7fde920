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
