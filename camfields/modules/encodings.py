"""Input encodings: map coordinates (N, in_dim) to features (N, out_dim).

All encodings take coordinates in [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from camfields.modules.grids import FeatureGrid, HashGrid
from camfields.modules.tcnn_grid import TcnnHashGrid


class IdentityEncoding(nn.Module):
    """Passes coordinates through unchanged."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = self.out_dim = in_dim

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return coords


class SinusoidalEncoding(nn.Module):
    """NeRF positional encoding: [x, sin(2^k pi x), cos(2^k pi x)] for k < num_freqs.

    Output dimension: in_dim * (2 * num_freqs + include_input).
    """

    def __init__(self, in_dim: int, num_freqs: int = 10, include_input: bool = True):
        super().__init__()
        self.in_dim = in_dim
        self.include_input = include_input
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32))
        self.out_dim = in_dim * (2 * num_freqs + int(include_input))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        phase = (coords[:, :, None] * self.freqs).flatten(1)  # (N, in_dim * num_freqs)
        parts = [coords] if self.include_input else []
        return torch.cat([*parts, torch.sin(phase), torch.cos(phase)], dim=-1)


class FourierFeatures(nn.Module):
    """Random Fourier features (Tancik et al. 2020): [sin(2 pi B u), cos(2 pi B u)].

    ``B`` is (in_dim, num_features) with entries N(0, sigma^2) and ``u = (x + 1) / 2``
    the coordinate rescaled to [0, 1], so ``sigma`` is in cycles per unit of the
    [0, 1] range, as in the FFN paper. Output dimension: 2 * num_features.
    The projection is a buffer drawn from torch's global generator (seed it first).
    """

    def __init__(self, in_dim: int, num_features: int = 256, sigma: float = 10.0):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = 2 * num_features
        self.register_buffer("proj", torch.randn(in_dim, num_features) * sigma)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        phase = (2.0 * math.pi) * (((coords + 1.0) * 0.5) @ self.proj)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class HashGridEncoding(nn.Module):
    """Instant-NGP multi-resolution hash encoding: (N, in_dim) -> (N, levels * features).

    Keyword arguments are those of ``HashGrid`` (``reduce`` is always "concat").
    ``backend`` is "auto", "torch" or "cuda" (``camfields.ops.hash_encode``), or "tcnn":
    tiny-cuda-nn's own hash grid (``camfields.modules.tcnn_grid``; optional, GPU only, a
    different parameterisation with the same settings).
    """

    def __init__(self, in_dim: int, backend: str = "auto", **hash_grid_kwargs):
        super().__init__()
        if backend == "tcnn":
            self.grid: FeatureGrid = TcnnHashGrid(in_dim, **hash_grid_kwargs)
        else:
            self.grid = HashGrid(in_dim, reduce="concat", backend=backend, **hash_grid_kwargs)
        self.in_dim = in_dim
        self.out_dim = self.grid.out_features

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.grid(coords)
