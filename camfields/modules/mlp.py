"""CAMMLP: an MLP whose hidden layers are modulated by a grid at the input coordinate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.modulation import GridFactory, GridModulation, modulation_features
from camfields.ops.modulate import check_norm, get_activation, normalize


class CAMMLP(nn.Module):
    """A coordinate MLP with coordinate-aware modulation (CAM).

    Hidden layer ``l`` computes ``a_l = act(norm(W_l a_{l-1} + b_l) * gamma_l(x) + beta_l(x))``
    for the modulated layers and ``act(W_l a_{l-1} + b_l)`` for the others; the output
    layer is ``out_act(W a + b)``. ``norm`` applies to the modulated layers, with or
    without a grid, so ``grid=None`` gives exactly the plain MLP that the CAM network
    equals at initialisation.

    Args:
        in_dim: coordinate dimension of the input ``x`` (N, in_dim).
        out_dim: output channels.
        hidden: width of every hidden layer.
        depth: number of hidden layers.
        encoding: module mapping x to features (with an ``out_dim`` attribute);
            None feeds the raw coordinates.
        grid: factory ``features -> FeatureGrid`` for the modulation grid, e.g.
            ``functools.partial(DenseGrid, (32, 32))``; None disables modulation.
        per_channel: one (gamma, beta) per channel, else one shared scalar pair.
        modulated_layers: indices of modulated hidden layers (default: all).
        skips: indices of hidden layers (>= 1) that also receive the encoded input,
            concatenated to the previous layer's output (NeRF's skip connection).
        norm: "none", "layer" or "group" normalization before modulation.
        groups: groups for ``norm="group"``.
        activation: hidden activation name.
        output_activation: output activation name.
        backend: backend of the modulation op ("auto", "torch", "cuda").
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 256,
        depth: int = 3,
        encoding: nn.Module | None = None,
        grid: GridFactory | None = None,
        per_channel: bool = False,
        modulated_layers: Sequence[int] | None = None,
        skips: Sequence[int] = (),
        norm: str = "none",
        groups: int = 1,
        activation: str = "relu",
        output_activation: str = "none",
        backend: str = "auto",
    ):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise CamfieldsError(f"a CAMMLP needs depth >= 1 and hidden >= 1, got depth={depth}, hidden={hidden}")
        layers = list(range(depth)) if modulated_layers is None else sorted(set(modulated_layers))
        if any(not 0 <= layer < depth for layer in layers):
            raise CamfieldsError(f"modulated layers {list(modulated_layers or [])} must be in 0..{depth - 1}")
        check_norm(norm, hidden, groups)
        get_activation(activation), get_activation(output_activation)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.encoding = encoding
        feature_dim = encoding.out_dim if encoding is not None else in_dim
        if any(not 1 <= layer < depth for layer in skips):
            raise CamfieldsError(f"skip layers {list(skips)} must be in 1..{depth - 1}")
        self.skips = set(skips)
        inputs = [feature_dim] + [hidden + (feature_dim if layer in self.skips else 0) for layer in range(1, depth)]
        self.hidden_layers = nn.ModuleList(nn.Linear(width, hidden) for width in inputs)
        self.output_layer = nn.Linear(hidden, out_dim)
        self.modulated_layers = layers
        self.norm, self.groups = norm, groups
        self.activation, self.output_activation = activation, output_activation
        self.backend = backend
        # built last, so a seed gives the same MLP weights with and without modulation
        self.modulation = (
            GridModulation(
                grid(modulation_features(len(layers), hidden, per_channel)), len(layers), hidden, per_channel
            )
            if grid is not None and layers
            else None
        )

    def forward(self, x: torch.Tensor, mod_coords: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate the field.

        Args:
            x: (N, in_dim) input coordinates (range as the encoding expects, [-1, 1]).
            mod_coords: (N, grid.in_dim) coordinates in [-1, 1] at which the
                modulation grid is read; defaults to ``x`` (for example a NeRF reads
                its view-direction grid at the direction, not at the position).
        Returns:
            (N, out_dim).
        """
        a = features = self.encoding(x) if self.encoding is not None else x
        modulation = self.modulation
        corners = modulation.corners(x if mod_coords is None else mod_coords) if modulation is not None else None
        slots = {layer: slot for slot, layer in enumerate(self.modulated_layers)}
        act = get_activation(self.activation)
        for index, linear in enumerate(self.hidden_layers):
            h = linear(torch.cat([a, features], dim=-1) if index in self.skips else a)
            if index not in slots:
                a = act(h)
                continue
            if corners is None:
                a = act(normalize(h, self.norm, self.groups))
            else:
                a = modulation.modulate(h, corners, slots[index], self.norm, self.groups, self.activation, self.backend)
        return get_activation(self.output_activation)(self.output_layer(a))
