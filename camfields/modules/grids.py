"""Feature grids: learnable functions from coordinates in [-1, 1] to feature vectors.

Every grid maps ``coords`` of shape (N, in_dim), each value in [-1, 1]
(``align_corners=True``: -1 and +1 are the first and last grid nodes), to
features of shape (N, out_features). They serve two roles:

* modulation grids (see ``camfields.modules.modulation``), where the features
  are *deltas* around the identity modulation and start at exactly zero;
* input encodings (the hash grid of Instant-NGP), started at small noise.

Parameters of every grid are found by ``isinstance(module, FeatureGrid)``, which
is how the optimizer puts them in the grid learning-rate group.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from camfields.config import check_choice
from camfields.errors import CamfieldsError
from camfields.ops.backend import BACKENDS
from camfields.ops.hash_encode import HASH_PRIMES, HashLayout, hash_encode
from camfields.ops.interp import GridCorners, check_coords, combine_corners, dense_corners

__all__ = ["HASH_PRIMES", "DenseGrid", "FeatureGrid", "HashGrid", "PlaneGrid"]


def _check_resolution(resolution: Sequence[int], what: str) -> tuple[int, ...]:
    res = tuple(int(r) for r in resolution)
    if not res or any(r < 2 for r in res):
        raise CamfieldsError(f"{what} needs at least 2 nodes along every axis, got {list(resolution)}")
    return res


def _init_table(rows: int, features: int, init_scale: float) -> nn.Parameter:
    table = torch.zeros(rows, features)
    if init_scale > 0:
        table.uniform_(-init_scale, init_scale)
    return nn.Parameter(table)


class FeatureGrid(nn.Module):
    """Base class: ``forward(coords (N, in_dim) in [-1, 1]) -> (N, out_features)``.

    Every grid keeps its values in one (T, F) parameter ``table`` and describes a lookup
    by ``corners(coords)``, which the fused CUDA kernels consume as well.
    """

    in_dim: int
    out_features: int
    table: nn.Parameter
    #: True for grids that give CAM scales and shifts (``train.modulation_lr_mult`` applies)
    modulation: bool = False

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        check_coords(coords, self.in_dim, f"coordinates of {type(self).__name__}")
        return combine_corners(self.table, self.corners(coords))

    def corners(self, coords: torch.Tensor) -> GridCorners:
        """The table rows and weights read at already-checked coordinates (N, in_dim)."""
        raise NotImplementedError


class DenseGrid(FeatureGrid):
    """A dense N-D grid with multilinear interpolation (1D linear, 2D bilinear, 3D trilinear).

    Args:
        resolution: node count per axis (R0, R1, ...); column d of the coordinates
            indexes axis d. ``len(resolution)`` is the input dimension.
        features: values stored per node.
        init_scale: nodes start uniform in [-init_scale, init_scale] (0: exactly zero).
    """

    def __init__(self, resolution: Sequence[int], features: int, init_scale: float = 0.0):
        super().__init__()
        self.resolution = _check_resolution(resolution, "a dense grid")
        self.in_dim = len(self.resolution)
        self.out_features = features
        self.table = _init_table(math.prod(self.resolution), features, init_scale)

    def corners(self, coords: torch.Tensor) -> GridCorners:
        index, weight = dense_corners(coords, self.resolution)
        return GridCorners(index[:, None], weight[:, None], "sum")

    def as_image(self) -> torch.Tensor:
        """The grid as (features, R_{D-1}, ..., R0), the layout of ``grid_sample``'s input."""
        return self.table.T.reshape(self.out_features, *reversed(self.resolution))


class PlaneGrid(FeatureGrid):
    """Axis-aligned planes over every pair of input axes: tri-plane (3D), K-planes (4D).

    Each plane is a dense 2D grid over two coordinates; samples of the planes are
    combined by

    * ``"sum"``: ``sum_k p_k``
    * ``"product"``: ``prod_k (1 + p_k) - 1``

    so that all-zero planes give zero features and, in both forms, every plane gets a
    gradient of exactly its interpolation weight at initialisation. (A plain product
    of zero-initialised planes would have zero gradient forever.) The planes are stored
    one after another in ``table``; ``plane_table(k)`` is plane k, (R_i * R_j, F).

    Args:
        resolution: node count per input axis, e.g. (128, 128, 128) or (64, 64, 64, 16).
        features: values per node (and output features).
        combine: "sum" or "product".
        init_scale: planes start uniform in [-init_scale, init_scale].
    """

    def __init__(
        self,
        resolution: Sequence[int],
        features: int,
        combine: str = "product",
        init_scale: float = 0.0,
    ):
        super().__init__()
        self.resolution = _check_resolution(resolution, "a plane grid")
        if len(self.resolution) < 2:
            raise CamfieldsError("a plane grid needs at least 2 input axes")
        if combine not in ("sum", "product"):
            raise CamfieldsError(f"unknown plane combination {combine!r}; choose 'sum' or 'product'")
        self.in_dim = len(self.resolution)
        self.out_features = features
        self.combine = combine
        self.axis_pairs = list(itertools.combinations(range(self.in_dim), 2))
        sizes = [self.resolution[i] * self.resolution[j] for i, j in self.axis_pairs]
        self.plane_offsets = [0, *itertools.accumulate(sizes)][:-1]
        self.table = _init_table(sum(sizes), features, init_scale)

    def plane_table(self, plane: int) -> torch.Tensor:
        """Rows of plane ``plane`` (axes ``axis_pairs[plane]``), (R_i * R_j, F)."""
        i, j = self.axis_pairs[plane]
        start = self.plane_offsets[plane]
        return self.table[start : start + self.resolution[i] * self.resolution[j]]

    def corners(self, coords: torch.Tensor) -> GridCorners:
        indices, weights = [], []
        for offset, (i, j) in zip(self.plane_offsets, self.axis_pairs):
            res = (self.resolution[i], self.resolution[j])
            index, weight = dense_corners(coords[:, [i, j]], res)
            indices.append(index + offset)
            weights.append(weight)
        return GridCorners(torch.stack(indices, 1), torch.stack(weights, 1), self.combine)


class HashGrid(FeatureGrid):
    """Multi-resolution hash grid in the Instant-NGP form.

    Level ``l`` has ``R_l = floor(base_resolution * growth ** l)`` nodes per axis
    (align_corners, so node 0 sits at -1 and node R_l - 1 at +1). A level with at
    most ``2 ** log2_table_size`` nodes is indexed directly; a finer level hashes node
    ``(i0, i1, ...)`` to ``(i0 * p0 xor i1 * p1 xor ...) mod 2 ** log2_table_size``
    with the primes of ``HASH_PRIMES`` (``layout``, a ``camfields.ops.hash_encode.HashLayout``).

    Args:
        in_dim: input dimension (1 to 7).
        levels: number of resolution levels.
        features_per_level: values per table entry.
        log2_table_size: log2 of the maximum entries per level.
        base_resolution: nodes per axis at the coarsest level.
        growth: resolution factor between levels (Instant-NGP's ``b``).
        reduce: "concat" levels into (N, levels * features) as an encoding does, or
            "sum" them into (N, features), as a modulation grid does.
        init_scale: entries start uniform in [-init_scale, init_scale] (Instant-NGP: 1e-4).
        backend: "auto", "torch" or "cuda" (fused kernels) for ``forward``
            (see ``camfields.ops.hash_encode``).
    """

    def __init__(
        self,
        in_dim: int,
        levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        growth: float = 1.5,
        reduce: str = "concat",
        init_scale: float = 1e-4,
        backend: str = "auto",
    ):
        super().__init__()
        if not 1 <= in_dim <= len(HASH_PRIMES):
            raise CamfieldsError(f"a hash grid takes 1 to {len(HASH_PRIMES)} input dimensions, got {in_dim}")
        if levels < 1 or features_per_level < 1 or not 1 <= log2_table_size <= 30:
            raise CamfieldsError("a hash grid needs levels >= 1, features_per_level >= 1 and log2_table_size in 1..30")
        if base_resolution < 2 or growth < 1.0:
            raise CamfieldsError("a hash grid needs base_resolution >= 2 and growth >= 1")
        if reduce not in ("concat", "sum"):
            raise CamfieldsError(f"unknown level reduction {reduce!r}; choose 'concat' or 'sum'")
        check_choice(backend, BACKENDS, "backend")
        self.in_dim = in_dim
        self.levels = levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_table_size
        self.reduce = reduce
        self.backend = backend
        self.out_features = features_per_level * (levels if reduce == "concat" else 1)
        self.resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        self.layout = HashLayout(in_dim, tuple(self.resolutions), self.table_size)
        self.level_sizes = self.layout.sizes
        self.level_offsets = self.layout.offsets
        self.table = _init_table(self.layout.rows, features_per_level, init_scale)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return hash_encode(coords, self.table, self.layout, self.reduce, self.backend)

    def level_is_hashed(self, level: int) -> bool:
        """True where the level has more nodes than table entries."""
        return self.layout.is_hashed(level)

    def level_index(self, corners: torch.Tensor, level: int) -> torch.Tensor:
        """Table rows (relative to the level's offset) of integer nodes (..., in_dim)."""
        return self.layout.index(corners, level)

    def corners(self, coords: torch.Tensor) -> GridCorners:
        return self.layout.corners(coords, self.reduce)
