"""The scene contraction of unbounded (360-degree) captures, after Mip-NeRF 360 (Barron et al. 2022).

Points inside the unit cube stay where they are; every point outside is pulled in towards the cube
[-2, 2]^3, infinity reaching its boundary:

    contract(x) = x                                  if ||x||_inf <= 1
                  (2 - 1 / ||x||_inf) x / ||x||_inf   otherwise

The max norm (rather than Mip-NeRF 360's Euclidean one) fills the whole cube, so that the occupancy
grid and the grids of the field waste no cells (nerfstudio does the same for its hash grids). The
field then lives in the box ``CONTRACTED_BOX``; the scene is expected centred on the origin with its
cameras within distance about 1 (``io.centring.centre_poses`` makes it so).

Example::

    >>> import torch
    >>> contract(torch.tensor([[0.5, 0.0, 0.0], [4.0, 2.0, 0.0]]))
    tensor([[0.5000, 0.0000, 0.0000],
            [1.7500, 0.8750, 0.0000]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from camfields.errors import CamfieldsError

#: the box that contracted points fill: [-2, 2]^3
CONTRACTED_BOX = [-2.0, -2.0, -2.0, 2.0, 2.0, 2.0]


def contract(points: torch.Tensor) -> torch.Tensor:
    """Contracted positions (..., 3) in [-2, 2]^3 of world points (..., 3) (any finite values)."""
    norm = points.abs().amax(dim=-1, keepdim=True)
    outside = norm > 1
    safe = torch.where(outside, norm, torch.ones_like(norm))
    return torch.where(outside, (2 - 1 / safe) * points / safe, points)


@dataclass(frozen=True)
class Contraction:
    """How rays of an unbounded scene reach the field: samples from ``near`` to ``far`` along each ray
    (world units, the scene centred with its cameras at distance about 1), their positions contracted
    (``contract``) into the field's box ``CONTRACTED_BOX``."""

    near: float = 0.05
    far: float = 1000.0

    def check(self, where: str) -> None:
        """One sentence naming ``where`` unless 0 < near < far, both finite."""
        numbers = (self.near, self.far)
        if not (
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
            and 0 < self.near < self.far
        ):
            raise CamfieldsError(
                f"{where}: contracted rays need 0 < near < far, finite, got near {self.near}, far {self.far}"
            )

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        return contract(points)
