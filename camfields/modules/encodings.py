"""Input encodings: map coordinates (N, in_dim) to features (N, out_dim).

All encodings take coordinates in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from camfields.modules.grids import DenseGrid, FeatureGrid, HashGrid
from camfields.modules.tcnn_grid import TcnnHashGrid
from camfields.ops.interp import check_coords


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


class PyramidEncoding(nn.Module):
    """A pyramid of latent grids, Cool-chic style: (N, in_dim) -> (N, levels * features).

    Level ``k`` is a dense grid (``DenseGrid``, multilinear, align_corners) of
    ``max(2, ceil(R_d / 2**k))`` nodes along axis ``d``, for ``resolution = (R_0, R_1, ...)``
    the finest level's nodes per axis (for an image, its width and height: one node per
    pixel). The levels' values are concatenated, finest first. Every level is a parameter of
    its own, so a codec codes each under its own entropy model, and the rate term of
    quantization-aware training (``compression.rate``) prices each by its own statistics: most
    of a fine level's nodes can round to zero while a coarse level keeps its range.

    Args:
        resolution: the finest level's nodes per axis; ``len(resolution)`` is the input dimension.
        levels: number of levels, each half as fine per axis as the one before.
        features: values stored per node.
        init_scale: nodes start uniform in [-init_scale, init_scale].

    Example::

        >>> enc = PyramidEncoding([8, 6], levels=3)
        >>> [g.resolution for g in enc.grids], enc(torch.zeros(5, 2)).shape
        ([(8, 6), (4, 3), (2, 2)], torch.Size([5, 3]))
    """

    def __init__(self, resolution: list[int], levels: int = 6, features: int = 1, init_scale: float = 1e-2):
        super().__init__()
        self.in_dim = len(resolution)
        self.out_dim = levels * features
        sizes = [[max(2, math.ceil(r / 2**k)) for r in resolution] for k in range(levels)]
        self.grids = nn.ModuleList(DenseGrid(size, features, init_scale) for size in sizes)

    def context_coded(self) -> dict[str, int]:
        """Every level's table with its nodes per row: a codec codes each latent under the context
        of the latents before it in raster order (``compression.context``)."""
        return {f"grids.{k}.table": grid.resolution[0] for k, grid in enumerate(self.grids)}

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if self.in_dim not in (2, 3):
            return torch.cat([grid(coords) for grid in self.grids], dim=-1)
        check_coords(coords, self.in_dim, "coordinates of PyramidEncoding")
        # grid_sample's bilinear / trilinear interpolation with align_corners is DenseGrid's, and
        # much faster than its gather on the CPU for grids as large as an image
        points = coords.reshape(1, -1, *[1] * (self.in_dim - 1), self.in_dim)
        values = [
            F.grid_sample(grid.as_image()[None], points, align_corners=True).reshape(grid.out_features, -1)
            for grid in self.grids
        ]
        return torch.cat(values).T
