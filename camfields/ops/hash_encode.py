"""Multi-resolution hash-grid encoding (Instant-NGP): the functional op and its fused twin.

    features(x) = levels of  sum_k w_k(x) * table[offset_l + row_l(node_k)]

concatenated over the levels (an encoding, (N, L * F)) or summed (a modulation grid, (N, F)).
Coordinates lie in [-1, 1] with ``align_corners=True`` (see ``camfields.ops.interp``).

Design note.

* **Reference.** The PyTorch path is ``combine_corners(table, layout.corners(coords))``:
  ``HashLayout.corners`` builds the (N, L, 2^D) rows and multilinear weights that
  ``camfields.modules.HashGrid.corners`` returns (and that the fused grid modulation reads).
* **Fused** (``cuda/hash_encode.cu``): one launch for all levels. A thread owns one point,
  one level ("concat"; with "sum" it walks every level) and up to 8 features; it computes
  the cell, the 2^D corner rows (dense index or XOR-of-primes hash: the same rule, and the
  primes passed in from here) and the weights in registers, so the (N, L, 2^D) index and
  weight tensors are never written. Kernels are specialised for 2D and 3D float32
  coordinates; other dimensions (up to 7) and float64 coordinates take a generic kernel.
  Positions are computed in the coordinates' precision (float16 / bfloat16 coordinates in
  float32); tables may be float32, float16, bfloat16 or float64, accumulated in float32
  (float64 for float64 tables); outputs have the table's dtype, as in the reference.
* **Gradients.** The table gradient is scattered with ``atomicAdd`` into a buffer of the
  accumulation type (float32 for float16 / bfloat16 tables, cast to the table's dtype after
  the kernel; we chose this over half2 atomics for accuracy: rows of coarse levels receive
  millions of small additions). Atomics make it order-dependent in its last bits, so under
  ``torch.use_deterministic_algorithms(True)`` the op takes the PyTorch path ("auto") or
  refuses ("cuda"). The coordinate gradient is analytic (derivative of the multilinear
  weights, times ``(R - 1) / 2``, times the gradient of ``clamp(-1, 1)``, which is zero at
  and beyond the edges, as the reference's autograd gives it); each thread writes its own
  partial sum, added over threads afterwards, so it is deterministic.
* **tinycudann** (``HashGridEncoding(..., backend="tcnn")``, ``camfields.modules.tcnn_grid``)
  is a different parameterisation, not bit-equal to this one; see that module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from camfields.config import check_choice
from camfields.errors import CamfieldsError
from camfields.ops.backend import BACKENDS, load_extension, resolve_backend
from camfields.ops.interp import GridCorners, cell_corners, check_coords, combine_corners

#: Spatial hash primes of Instant-NGP (Teschner et al.), one per input dimension.
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)

#: Level reductions: side by side (an encoding) or summed (a modulation grid).
REDUCTIONS = ("concat", "sum")

#: Most levels the fused kernel takes (cuda/hash_encode.h, kMaxLevels); more use PyTorch.
MAX_FUSED_LEVELS = 64


@dataclass(frozen=True)
class HashLayout:
    """Where each level of a hash grid lives in its one (rows, F) table.

    Level ``l`` has ``resolutions[l]`` nodes per axis. A level with at most ``table_size``
    nodes is indexed directly (``i0 + R * (i1 + R * ...)``); a finer one hashes node
    ``(i0, i1, ...)`` to ``(i0 * p0 xor i1 * p1 xor ...) mod table_size`` with ``HASH_PRIMES``.
    Levels are stored one after another from row ``offsets[l]``.

    Args:
        in_dim: input dimension, 1 to 7.
        resolutions: nodes per axis of each level, each >= 2.
        table_size: most rows of one level, a power of two from 2 to 2**30.
    """

    in_dim: int
    resolutions: tuple[int, ...]
    table_size: int

    def __post_init__(self) -> None:
        if not 1 <= self.in_dim <= len(HASH_PRIMES):
            raise CamfieldsError(f"a hash grid takes 1 to {len(HASH_PRIMES)} input dimensions, got {self.in_dim}")
        if not self.resolutions or min(self.resolutions) < 2:
            raise CamfieldsError(f"a hash grid needs levels of at least 2 nodes, got {list(self.resolutions)}")
        size = self.table_size
        if not 2 <= size <= 2**30 or size & (size - 1):
            raise CamfieldsError(f"a hash table size must be a power of two from 2 to 2**30, got {size}")

    @property
    def sizes(self) -> list[int]:
        """Rows of each level: its node count, at most ``table_size``."""
        return [min(self.table_size, r**self.in_dim) for r in self.resolutions]

    @property
    def offsets(self) -> list[int]:
        """First table row of each level."""
        return [0, *itertools.accumulate(self.sizes)][:-1]

    @property
    def rows(self) -> int:
        """Rows of the whole table."""
        return sum(self.sizes)

    def is_hashed(self, level: int) -> bool:
        """True where the level has more nodes than table entries."""
        return self.resolutions[level] ** self.in_dim > self.table_size

    def index(self, corners: torch.Tensor, level: int) -> torch.Tensor:
        """Table rows (relative to the level's offset) of integer nodes (..., in_dim)."""
        if not self.is_hashed(level):
            res = self.resolutions[level]
            index = torch.zeros(corners.shape[:-1], dtype=torch.long, device=corners.device)
            for axis in reversed(range(self.in_dim)):
                index = index * res + corners[..., axis]
            return index
        index = corners[..., 0] * HASH_PRIMES[0]
        for axis in range(1, self.in_dim):
            index = torch.bitwise_xor(index, corners[..., axis] * HASH_PRIMES[axis])
        return index & (self.table_size - 1)

    def corners(self, coords: torch.Tensor, reduce: str) -> GridCorners:
        """Rows and weights (N, levels, 2**in_dim) read at checked coordinates (N, in_dim) in [-1, 1]."""
        indices, weights = [], []
        for level, (res, offset) in enumerate(zip(self.resolutions, self.offsets)):
            nodes, weight = cell_corners(coords, (res,) * self.in_dim)
            indices.append(self.index(nodes, level) + offset)
            weights.append(weight)
        return GridCorners(torch.stack(indices, 1), torch.stack(weights, 1), reduce)

    def kernel_args(self) -> tuple[list[int], list[int], list[bool], list[int], int]:
        """The layout as the fused kernels take it: resolutions, offsets, hashed, primes, table size."""
        hashed = [self.is_hashed(level) for level in range(len(self.resolutions))]
        primes = list(HASH_PRIMES[: self.in_dim])
        return list(self.resolutions), self.offsets, hashed, primes, self.table_size


class FusedHashEncode(torch.autograd.Function):
    """The CUDA kernels (cuda/hash_encode.cu); gradients flow to the coordinates and the table."""

    @staticmethod
    def forward(ctx, coords, table, layout_args, reduce_sum: bool):
        module, _ = load_extension()
        ctx.args = (*layout_args, reduce_sum)
        ctx.save_for_backward(coords, table)
        return module.hash_encode_forward(coords, table, *ctx.args)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        module, _ = load_extension()
        coords, table = ctx.saved_tensors
        need_coords, need_table = ctx.needs_input_grad[:2]
        grad_table, grad_coords = module.hash_encode_backward(
            grad_out.contiguous(), coords, table, *ctx.args, need_table, need_coords
        )
        return (grad_coords if need_coords else None), (grad_table if need_table else None), None, None


def _check_table(table: torch.Tensor, coords: torch.Tensor, layout: HashLayout) -> None:
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[0] != layout.rows:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise CamfieldsError(f"a hash table for this layout must have shape ({layout.rows}, F), got {shape}")
    if not table.is_floating_point():
        raise CamfieldsError(f"a hash table must be floating point, got {table.dtype}")
    if table.device != coords.device:
        raise CamfieldsError(f"the hash table is on {table.device} but the coordinates are on {coords.device}")


def _use_fused(backend: str, coords: torch.Tensor, table: torch.Tensor, layout: HashLayout) -> bool:
    """Whether the fused kernels run; "auto" takes the PyTorch path where they may not."""
    check_choice(backend, BACKENDS, "backend")
    blocked = None
    if torch.are_deterministic_algorithms_enabled():
        blocked = "accumulates table gradients with atomics, which torch.use_deterministic_algorithms(True) forbids"
    elif len(layout.resolutions) > MAX_FUSED_LEVELS:
        blocked = f"takes at most {MAX_FUSED_LEVELS} levels, not {len(layout.resolutions)}"
    if blocked is None:
        return resolve_backend(backend, coords, table) == "cuda"
    if backend == "cuda":
        raise CamfieldsError(f"hash_encode with backend='cuda' {blocked}; use backend 'auto' or 'torch'")
    return False


def hash_encode(
    coords: torch.Tensor,
    table: torch.Tensor,
    layout: HashLayout,
    reduce: str = "concat",
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-resolution hash-grid features of each point.

    Args:
        coords: (N, in_dim) in [-1, 1] (align_corners=True: -1 and +1 are each level's first
            and last node; values are clamped to the edges).
        table: (layout.rows, F) values of every level, float32, float16, bfloat16 or float64.
        layout: resolutions, table size and offsets of the levels.
        reduce: "concat" (N, levels * F), level 0 first, or "sum" (N, F) over the levels.
        backend: "auto", "torch" (reference, CPU) or "cuda" (fused kernels).
    Returns:
        features in the table's dtype, differentiable in ``table`` and ``coords``.

    Example:
        >>> layout = HashLayout(in_dim=2, resolutions=(2, 4), table_size=16)
        >>> table = torch.arange(2 * layout.rows, dtype=torch.float32).reshape(-1, 2)
        >>> hash_encode(torch.tensor([[-1.0, -1.0]]), table, layout)  # node 0 of each level
        tensor([[0., 1., 8., 9.]])
    """
    check_coords(coords, layout.in_dim, "hash-grid coordinates")
    _check_table(table, coords, layout)
    check_choice(reduce, REDUCTIONS, "level reduction")
    if _use_fused(backend, coords, table, layout):
        compute = coords if coords.dtype in (torch.float32, torch.float64) else coords.float()
        return FusedHashEncode.apply(compute.contiguous(), table.contiguous(), layout.kernel_args(), reduce == "sum")
    return combine_corners(table, layout.corners(coords, reduce))
