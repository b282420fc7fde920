"""Grid modulation: per-point scale (gamma) and shift (beta) for each modulated layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.grids import FeatureGrid
from camfields.ops.grid_modulate import grid_modulate
from camfields.ops.interp import GridCorners, check_coords

#: Builds a feature grid with the given number of output features.
GridFactory = Callable[[int], FeatureGrid]


def modulation_features(num_layers: int, channels: int, per_channel: bool) -> int:
    """Features a grid must output to modulate ``num_layers`` layers of ``channels``."""
    return num_layers * 2 * (channels if per_channel else 1)


class GridModulation(nn.Module):
    """Reads (gamma, beta) for each modulated layer from one feature grid.

    Layer ``slot`` reads table columns ``slot * 2 * width`` onwards: ``width`` gamma deltas,
    then ``width`` beta deltas. The grid's features are deltas around the identity: ``gamma = 1 + delta_gamma``,
    ``beta = delta_beta``. Grids start at zero, so an untrained network is exactly its
    plain MLP, and every grid value still receives a gradient.

    Args:
        grid: a grid with ``modulation_features(num_layers, channels, per_channel)`` outputs.
        num_layers: modulated layers.
        channels: width of the modulated layers.
        per_channel: one (gamma, beta) per channel, else one scalar pair per point.
    """

    def __init__(self, grid: FeatureGrid, num_layers: int, channels: int, per_channel: bool):
        super().__init__()
        needed = modulation_features(num_layers, channels, per_channel)
        if grid.out_features != needed:
            raise CamfieldsError(
                f"a modulation grid for {num_layers} layers of {channels} channels "
                f"({'per channel' if per_channel else 'shared scalar'}) needs {needed} "
                f"features, got a grid with {grid.out_features}"
            )
        self.grid = grid
        self.grid.modulation = True
        self.width = channels if per_channel else 1

    @property
    def in_dim(self) -> int:
        return self.grid.in_dim

    def corners(self, coords: torch.Tensor) -> GridCorners:
        """Where the grid is read for each point (computed once, shared by all layers)."""
        check_coords(coords, self.grid.in_dim, f"modulation coordinates of {type(self.grid).__name__}")
        return self.grid.corners(coords)

    def modulate(
        self, h: torch.Tensor, corners: GridCorners, slot: int, norm: str, groups: int, activation: str, backend: str
    ) -> torch.Tensor:
        """``act(norm(h) * gamma + beta)`` for modulated layer number ``slot`` (N, channels)."""
        return grid_modulate(
            h, self.grid.table, corners, slot * 2 * self.width, self.width, norm, groups, activation, backend=backend
        )
