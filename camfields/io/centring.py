"""Where a capture's poses are put before fitting: a similarity transform from the recorded world to
the scene's frame (``SceneFrame``), found from the cameras alone.

- ``centred_frame``, for inward-facing, unbounded (360-degree) captures fitted with contracted rays:
  the origin at the point nearest to every camera's optical axis (what the cameras look at), the
  mean camera up vector turned to +z (the turntable's axis and the elevation of direction CAM), and
  the scale that puts the farthest camera at distance 1 (the unit cube of ``render.contraction``).
- ``forward_facing_frame`` (``io.llff``), for forward-facing captures fitted with NDC rays.

The frame is recorded in the scene file so that poses given in the capture's own coordinates (a
``transforms_*.json`` to render) land where the fitted field is.

Example::

    >>> import torch
    >>> from camfields.render.rays import look_at
    >>> eyes = torch.tensor([[3.0, 0, 5], [0, 3, 5], [-3, 0, 5], [0, -3, 5]])
    >>> poses = torch.stack([look_at(eye, torch.tensor([0.0, 0, 2])) for eye in eyes])
    >>> frame = centred_frame(poses)
    >>> [round(float(v), 4) for v in frame.centre]
    [0.0, 0.0, 2.0]
    >>> frame.apply(poses)[:, :3, 3].norm(dim=-1)
    tensor([1.0000, 1.0000, 1.0000, 1.0000])
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from camfields.errors import CamfieldsError

#: the least eigenvalue of the mean axis projector below which the optical axes have no common point
#: (the sine squared of their spread: about 13 degrees)
MIN_AXIS_SPREAD = 0.05


class SceneFrame(NamedTuple):
    """The similarity x_scene = scale * rotation @ (x_world - centre): rotation (3, 3), centre (3,), scale > 0."""

    rotation: torch.Tensor
    centre: torch.Tensor
    scale: float

    def apply(self, poses: torch.Tensor) -> torch.Tensor:
        """Camera-to-world poses (N, 4, 4) of the recorded world as poses of the scene frame (same dtype)."""
        rotation, centre = self.rotation.to(torch.float64), self.centre.to(torch.float64)
        moved = poses.to(torch.float64, copy=True)
        moved[:, :3, :3] = rotation @ moved[:, :3, :3]
        moved[:, :3, 3] = self.scale * (moved[:, :3, 3] - centre) @ rotation.T
        return moved.to(poses.dtype)

    def matrix(self) -> torch.Tensor:
        """The 4x4 float64 matrix of the similarity (world -> scene), as recorded in scene files."""
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = self.scale * self.rotation.to(torch.float64)
        m[:3, 3] = -m[:3, :3] @ self.centre.to(torch.float64)
        return m

    @staticmethod
    def of_matrix(matrix: torch.Tensor, where: str) -> SceneFrame:
        """The frame of a 4x4 similarity ``matrix`` (as ``matrix`` writes it); one sentence naming ``where``
        unless it is finite, its last row [0, 0, 0, 1] and its 3x3 part a positive scale times a rotation."""
        m = torch.as_tensor(matrix, dtype=torch.float64)
        if m.shape != (4, 4) or not torch.isfinite(m).all():
            raise CamfieldsError(f"{where}: a scene frame must be a finite 4x4 matrix")
        linear = m[:3, :3]
        determinant = float(torch.linalg.det(linear))
        scale = determinant ** (1 / 3) if determinant > 0 else 0.0
        rotation = linear / scale if scale > 0 else linear
        if (
            scale <= 0
            or not torch.allclose(m[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64))
            or not torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=torch.float64), atol=1e-6)
        ):
            raise CamfieldsError(f"{where}: a scene frame must be a scaled rotation and a translation")
        centre = -torch.linalg.solve(linear, m[:3, 3])
        return SceneFrame(rotation, centre, scale)


def rotation_to_z(up: torch.Tensor) -> torch.Tensor:
    """The rotation (3, 3) float64 that turns the unit vector ``up`` (3,) to +z (the least turn; a half
    turn about x when ``up`` is -z)."""
    up = up.to(torch.float64) / up.norm()
    axis, cos = torch.linalg.cross(up, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)), float(up[2])
    if cos < -1 + 1e-12:
        return torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    x, y, z = axis.tolist()
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=torch.float64)  # cross product with axis
    return torch.eye(3, dtype=torch.float64) + k + k @ k / (1 + cos)


def centred_frame(poses: torch.Tensor, where: str = "the poses") -> SceneFrame:
    """The frame of an inward-facing capture whose OpenGL camera-to-world ``poses`` (N, 4, 4) look at a
    common centre: origin at the point nearest to every optical axis (least squares), mean up to +z,
    farthest camera at distance 1. One sentence naming ``where`` when the axes are too close to parallel
    to meet (a forward-facing capture: fit it with NDC rays) or the up vectors cancel out."""
    poses = poses.to(torch.float64)
    origins, axes = poses[:, :3, 3], -poses[:, :3, 2]
    axes = axes / axes.norm(dim=-1, keepdim=True)
    projectors = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]
    mean_projector = projectors.mean(dim=0)
    if len(poses) < 2 or float(torch.linalg.eigvalsh(mean_projector)[0]) < MIN_AXIS_SPREAD:
        raise CamfieldsError(
            f"{where}: the cameras' viewing directions spread too little to find the point they look at "
            '(a forward-facing capture? fit it with rays.space = "ndc")'
        )
    centre = torch.linalg.solve(mean_projector, (projectors @ origins[:, :, None]).mean(dim=0)).squeeze(-1)
    up = poses[:, :3, 1].sum(dim=0)
    if float(up.norm()) < 1e-6 * len(poses):
        raise CamfieldsError(f"{where}: the cameras' up vectors cancel out; no common up direction to turn to +z")
    distance = float((origins - centre).norm(dim=-1).max())
    if distance <= 0:
        raise CamfieldsError(f"{where}: every camera sits at the point they look at")
    return SceneFrame(rotation_to_z(up), centre, 1.0 / distance)
