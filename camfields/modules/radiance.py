"""A radiance field: density and view-dependent colour of a scene inside a box."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from camfields.modules.mlp import CAMMLP


def direction_angles(directions: torch.Tensor) -> torch.Tensor:
    """(azimuth / pi, 2 * elevation / pi) in [-1, 1] of unit directions (N, 3): (N, 2)."""
    azimuth = torch.atan2(directions[:, 1], directions[:, 0]) / math.pi
    elevation = torch.asin(directions[:, 2].clamp(-1.0, 1.0)) * (2.0 / math.pi)
    return torch.stack([azimuth, elevation], dim=-1)


class RadianceField(nn.Module):
    """Density and colour at points in an axis-aligned box.

    The trunk maps positions, normalised to [-1, 1] in the box, to ``1 + features`` values:
    the raw density (through ``softplus(raw + density_bias)``; the negative default makes
    the untrained scene nearly transparent instead of a fog) and a feature vector. The head maps the features and
    the encoded view direction to RGB (sigmoid). A CAM trunk is modulated at the position;
    a head built with a 2D grid is modulated at the direction's (azimuth, elevation).

    Args:
        trunk: CAMMLP with ``in_dim=3`` and ``out_dim = 1 + head feature width``.
        head: CAMMLP whose input is the trunk features followed by ``dir_encoding(d)``.
        dir_encoding: module mapping unit directions (N, 3) to (N, E).
        aabb: (6,) box (xmin, ymin, zmin, xmax, ymax, zmax).
        density_bias: added to the raw density before softplus.
    """

    def __init__(
        self, trunk: CAMMLP, head: CAMMLP, dir_encoding: nn.Module, aabb: torch.Tensor, density_bias: float = -2.0
    ):
        super().__init__()
        self.density_bias = density_bias
        self.trunk, self.head, self.dir_encoding = trunk, head, dir_encoding
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """Points (N, 3) in the box mapped to [-1, 1]^3 (clamped)."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        return ((points - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)

    def _trunk(self, points: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalize(points))

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Density (N,) >= 0 at world points (N, 3)."""
        return F.softplus(self._trunk(points)[:, 0] + self.density_bias)

    def forward(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (N,) and colour (N, 3) in [0, 1] at points seen along unit directions (N, 3)."""
        raw = self._trunk(points)
        head_in = torch.cat([raw[:, 1:], self.dir_encoding(directions)], dim=-1)
        mod_coords = direction_angles(directions) if self.head.modulation is not None else None
        return F.softplus(raw[:, 0] + self.density_bias), self.head(head_in, mod_coords)
