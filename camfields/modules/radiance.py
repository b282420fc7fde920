"""A radiance field: density and view-dependent colour of a scene inside a box, static or over time."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.mlp import CAMMLP
from camfields.ops.sync import to_device

#: where the trunk's modulation grid is read: position (3D), time (1D), both (4D), or the view direction's
#: (azimuth, elevation) (2D: the CAM paper's Mip-NeRF 360 setting; density then depends on the view)
TRUNK_MODULATION_COORDS = ("position", "time", "space_time", "direction")
#: the dimension of each of those coordinates
TRUNK_MODULATION_DIMS = {"position": 3, "time": 1, "space_time": 4, "direction": 2}


def direction_angles(directions: torch.Tensor) -> torch.Tensor:
    """(azimuth / pi, 2 * elevation / pi) in [-1, 1] of unit directions (N, 3): (N, 2)."""
    azimuth = torch.atan2(directions[:, 1], directions[:, 0]) / math.pi
    elevation = torch.asin(directions[:, 2].clamp(-1.0, 1.0)) * (2.0 / math.pi)
    return torch.stack([azimuth, elevation], dim=-1)


class RadianceField(nn.Module):
    """Density and colour at points in an axis-aligned box, optionally at a time t in [0, 1].

    Positions are normalised to x in [-1, 1]^3 in the box and times to s = 2t - 1 in [-1, 1].
    A ``deformation`` CAMMLP maps (x, s) to an offset, and the canonical field is read at
    x + offset (T-NeRF); its last layer starts at zero, so the untrained offset is zero.
    The trunk maps x (or (x, s) with ``time_input``) to ``1 + features`` values: the raw
    density (through ``softplus(raw + density_bias)``; the negative default makes the
    untrained scene nearly transparent instead of a fog) and a feature vector. A CAM
    trunk is modulated at ``trunk_modulation``: the position, the time, (x, s), or the view
    direction's (azimuth, elevation) (``direction_angles``), which makes density depend on the
    view (``view_dependent_density``: pass ``directions`` to ``density``). The head
    maps the features and the encoded view direction to RGB (sigmoid); a head built with a
    2D grid is modulated at the direction's (azimuth, elevation).

    Args:
        trunk: CAMMLP with ``in_dim`` 3 (4 with ``time_input``) and ``out_dim = 1 + features``.
        head: CAMMLP whose input is the trunk features followed by ``dir_encoding(d)``.
        dir_encoding: module mapping unit directions (N, 3) to (N, E).
        aabb: (6,) box (xmin, ymin, zmin, xmax, ymax, zmax).
        density_bias: added to the raw density before softplus.
        deformation: CAMMLP (N, 4) -> (N, 3) offsets in normalised units, or None.
        time_input: feed the normalised time to the trunk beside the position.
        trunk_modulation: "position", "time", "space_time" or "direction".
    """

    def __init__(
        self,
        trunk: CAMMLP,
        head: CAMMLP,
        dir_encoding: nn.Module,
        aabb: torch.Tensor,
        density_bias: float = -2.0,
        deformation: CAMMLP | None = None,
        time_input: bool = False,
        trunk_modulation: str = "position",
    ):
        super().__init__()
        if trunk_modulation not in TRUNK_MODULATION_COORDS:
            raise CamfieldsError(
                f"unknown trunk modulation coordinates {trunk_modulation!r}; choose from {TRUNK_MODULATION_COORDS}"
            )
        self.density_bias = density_bias
        self.trunk, self.head, self.dir_encoding = trunk, head, dir_encoding
        self.deformation, self.time_input, self.trunk_modulation = deformation, time_input, trunk_modulation
        if deformation is not None:
            nn.init.zeros_(deformation.output_layer.weight)
            nn.init.zeros_(deformation.output_layer.bias)
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))

    @property
    def dynamic(self) -> bool:
        """True when the field depends on time (``times`` must then be given)."""
        return self.deformation is not None or self.time_input or self.trunk_modulation in ("time", "space_time")

    @property
    def view_dependent_density(self) -> bool:
        """True when density depends on the view direction (a trunk modulated at the direction)."""
        return self.trunk_modulation == "direction" and self.trunk.modulation is not None

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """Points (N, 3) in the box mapped to [-1, 1]^3 (clamped)."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        return ((points - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)

    def canonical(self, points: torch.Tensor, times: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised canonical positions (N, 3) and normalised times (N, 1) or None."""
        if self.dynamic and times is None:
            raise CamfieldsError("this radiance field depends on time: pass times (N,) in [0, 1]")
        x = self.normalize(points)
        s = None if times is None else (times.to(x.dtype)[:, None] * 2.0 - 1.0).clamp(-1.0, 1.0)
        if self.deformation is not None:
            x = (x + self.deformation(torch.cat([x, s], dim=-1))).clamp(-1.0, 1.0)
        return x, s

    def _trunk(
        self, points: torch.Tensor, times: torch.Tensor | None, directions: torch.Tensor | None = None
    ) -> torch.Tensor:
        x, s = self.canonical(points, times)
        inputs = torch.cat([x, s], dim=-1) if self.time_input else x
        if self.trunk.modulation is None:
            return self.trunk(inputs, None)
        if self.trunk_modulation == "direction":
            if directions is None:
                raise CamfieldsError("this radiance field's density depends on the view: pass directions (N, 3)")
            return self.trunk(inputs, direction_angles(directions))
        mod = {"position": x, "time": s, "space_time": None if s is None else torch.cat([x, s], dim=-1)}
        return self.trunk(inputs, mod[self.trunk_modulation])

    def density(
        self, points: torch.Tensor, times: torch.Tensor | None = None, directions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Density (N,) >= 0 at world points (N, 3) (at times (N,) for a dynamic field, seen along unit
        ``directions`` (N, 3) for a view-dependent one)."""
        return F.softplus(self._trunk(points, times, directions)[:, 0] + self.density_bias)

    def occupancy_density(
        self, points: torch.Tensor, generator: torch.Generator | None = None, stratum: tuple[int, int] = (0, 1)
    ) -> torch.Tensor:
        """Density (N,) for the occupancy grid. A dynamic field is read at a random time per
        point inside time stratum ``k`` of ``n`` ([k/n, (k+1)/n)): cycling k over successive
        updates shows every cell every part of [0, 1], so a grid keeping the decaying running
        maximum covers the content at all times. A view-dependent field is read along a random
        direction per point, so that the running maximum covers the views in the same way."""
        times = directions = None
        if self.dynamic:
            k, n = stratum
            times = to_device((k + torch.rand(len(points), generator=generator)) / n, points.device)
        if self.view_dependent_density:
            directions = F.normalize(to_device(torch.randn(len(points), 3, generator=generator), points.device), dim=-1)
        return self.density(points, times, directions)

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, times: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (N,) and colour (N, 3) in [0, 1] at points seen along unit directions (N, 3)."""
        raw = self._trunk(points, times, directions)
        head_in = torch.cat([raw[:, 1:], self.dir_encoding(directions)], dim=-1)
        mod_coords = direction_angles(directions) if self.head.modulation is not None else None
        return F.softplus(raw[:, 0] + self.density_bias), self.head(head_in, mod_coords)
