"""Grid modulation: per-point scale (gamma) and shift (beta) for each modulated layer."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.grids import FeatureGrid

#: Builds a feature grid with the given number of output features.
GridFactory = Callable[[int], FeatureGrid]


def modulation_features(num_layers: int, channels: int, per_channel: bool) -> int:
    """Features a grid must output to modulate ``num_layers`` layers of ``channels``."""
    return num_layers * 2 * (channels if per_channel else 1)


class GridModulation(nn.Module):
    """Reads (gamma, beta) for each modulated layer from one feature grid.

    The grid's features are deltas around the identity: ``gamma = 1 + delta_gamma``,
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
        self.num_layers = num_layers
        self.width = channels if per_channel else 1

    @property
    def in_dim(self) -> int:
        return self.grid.in_dim

    def forward(self, coords: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gamma, beta) per modulated layer, each (N, channels) or (N, 1)."""
        deltas = self.grid(coords).view(coords.shape[0], self.num_layers, 2, self.width)
        return [(1.0 + deltas[:, layer, 0], deltas[:, layer, 1]) for layer in range(self.num_layers)]
