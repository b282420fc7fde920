"""Multilinear interpolation on regular grids: the reference used by every grid.

Coordinate convention (used throughout camfields): coordinates lie in
``[-1, 1]`` and grids follow ``align_corners=True``: along an axis with ``R``
nodes, ``-1`` is exactly node ``0`` and ``+1`` is exactly node ``R - 1``.
This matches ``torch.nn.functional.grid_sample(..., align_corners=True)``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from camfields.errors import CamfieldsError
from camfields.ops.sync import checks_values, device_constant

#: Tolerance when checking that coordinates lie in [-1, 1].
COORD_TOLERANCE = 1e-5


def check_coords(coords: torch.Tensor, in_dim: int, what: str = "coordinates") -> None:
    """Raise a CamfieldsError unless ``coords`` is a float (N, in_dim) tensor in [-1, 1].

    Shape and dtype are always checked. The range check reads values back, a host wait on a
    GPU: it runs on CPU tensors always and on CUDA tensors only in debug mode
    (``camfields.ops.set_debug(True)`` or ``CAMFIELDS_DEBUG=1``); unchecked values outside
    [-1, 1] are clamped to the grid's edge by the interpolation.
    """
    if not isinstance(coords, torch.Tensor):
        raise CamfieldsError(f"{what} must be a torch.Tensor, got {type(coords).__name__}")
    if coords.dim() != 2 or coords.shape[1] != in_dim:
        raise CamfieldsError(f"{what} must have shape (N, {in_dim}), got {tuple(coords.shape)}")
    if not coords.is_floating_point():
        raise CamfieldsError(f"{what} must be floating point, got {coords.dtype}")
    if coords.numel() == 0 or not checks_values(coords):
        return
    lo, hi = torch.stack(torch.aminmax(coords.detach())).tolist()
    if lo < -1.0 - COORD_TOLERANCE or hi > 1.0 + COORD_TOLERANCE:
        raise CamfieldsError(f"{what} must lie in [-1, 1]; got values from {lo:.4g} to {hi:.4g}")


def corner_offsets(dim: int, device: torch.device) -> torch.Tensor:
    """The 2**dim corner offsets of a unit cell, (2**dim, dim) int64, axis 0 varying slowest."""
    return device_constant(tuple(itertools.product((0, 1), repeat=dim)), torch.long, device)


def cell_positions(coords: torch.Tensor, resolution: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower cell corner and fractional position of each point.

    Args:
        coords: (N, D) in [-1, 1].
        resolution: D node counts, each >= 2.
    Returns:
        ``base`` (N, D) int64 in [0, R - 2] and ``frac`` (N, D) in [0, 1], differentiable
        with respect to ``coords``. A coordinate of exactly +1 gives ``base = R - 2``
        and ``frac = 1``, so the last node is reached without reading past the grid.
    """
    res = device_constant(tuple(resolution), coords.dtype, coords.device)
    pos = ((coords.clamp(-1.0, 1.0) + 1.0) * 0.5) * (res - 1.0)
    base = torch.minimum(pos.detach().floor(), res - 2.0).clamp_min(0.0)
    frac = pos - base
    return base.long(), frac


def corner_weights(frac: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Multilinear weights (N, K) of the K corners in ``offsets`` for fractions (N, D)."""
    # weight of corner c = prod_d (frac_d if c_d else 1 - frac_d)
    choose = offsets.to(frac.dtype)  # (K, D)
    per_axis = frac[:, None, :] * choose + (1.0 - frac[:, None, :]) * (1.0 - choose)
    return per_axis.prod(dim=-1)


def dense_index(corners: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """Row index into a dense (prod(R), F) table, axis 0 fastest: i0 + R0 * (i1 + R1 * i2 ...)."""
    index = torch.zeros(corners.shape[:-1], dtype=torch.long, device=corners.device)
    stride = 1
    for axis, size in enumerate(resolution):
        index = index + corners[..., axis] * stride
        stride *= size
    return index


#: Widest table (columns) that counts as narrow on CPU: its table gradient takes one 1-D
#: ``index_add_`` per column and its weight gradient gathers whole rows with ``F.embedding``;
#: wider tables take the sparse and fused kernels.
NARROW_MAX_COLUMNS = 4


def _cpu_float(tensor: torch.Tensor) -> bool:
    """True for float32 / float64 CPU tensors: the other devices and dtypes keep the plain formulas."""
    return tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)


def _sparse_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix, without torch's one-time warning that sparse CSR is a beta feature."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def table_gradient(grad: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, rows: int) -> torch.Tensor:
    """Gradient (rows, F) of a (rows, F) table read by ``gather_weighted``: row ``index[n, k]``
    gets ``weights[n, k] * grad[n]`` summed over every (n, k).

    Args:
        grad: (N, F) cotangent of the output.
        index: (N, K) table rows in [0, rows).
        weights: (N, K) interpolation weights, ``grad``'s dtype.
        rows: table rows T.

    On CPU (float32 / float64) no (N * K, F) weighted rows are built:

    * F <= ``NARROW_MAX_COLUMNS``: one 1-D ``index_add_`` per column (a tight loop; the same
      sums in the same order as the 2-D ``index_add_``, so bit-identical to it);
    * wider: ``W^T @ grad`` by MKL's sparse kernel, with ``W`` the (N, T) weight matrix and
      ``W^T`` in CSR form, built by sorting the entries by table row.

    Otherwise (CUDA) one 2-D ``index_add_`` of the weighted rows, deterministic there.
    """
    columns = grad.shape[1]
    flat = index.reshape(-1)
    if flat.numel() == 0 or columns == 0:
        return grad.new_zeros(rows, columns)
    if not _cpu_float(grad):
        weighted = (grad[:, None, :] * weights[..., None]).reshape(-1, columns)
        return grad.new_zeros(rows, columns).index_add_(0, flat, weighted)
    if columns <= NARROW_MAX_COLUMNS:
        by_column = grad.new_zeros(columns, rows)
        for j in range(columns):
            by_column[j].index_add_(0, flat, (weights * grad[:, j, None]).reshape(-1))
        return by_column.T.contiguous()
    points, corners = index.shape
    order = torch.sort(flat.to(torch.int32) if rows <= torch.iinfo(torch.int32).max else flat).indices
    crow = flat.new_zeros(rows + 1)
    torch.cumsum(torch.bincount(flat, minlength=rows), 0, out=crow[1:])
    col = torch.div(order, corners, rounding_mode="floor")
    return _sparse_csr(crow, col, weights.reshape(-1)[order], (rows, points)) @ grad.contiguous()


def weight_gradient(table: torch.Tensor, index: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient (N, K) of ``gather_weighted``'s weights: ``table[index[n, k]] . grad[n]``.

    Args:
        table: (T, F) values; index: (N, K) rows; grad: (N, F) cotangent.

    On CPU (float32 / float64): for F > ``NARROW_MAX_COLUMNS`` torch's fused kernel for
    ``embedding_bag``'s ``per_sample_weights`` gradient (one dot product per entry, no
    (N, K, F) gather); for narrow tables ``F.embedding`` (whole-row copies) and ``bmm``.
    Otherwise (CUDA) the gather, multiply and sum.
    """
    if not _cpu_float(grad):
        return (table[index] * grad[:, None, :]).sum(-1)
    if grad.shape[1] <= NARROW_MAX_COLUMNS:
        return torch.bmm(F.embedding(index, table), grad[:, :, None]).view(index.shape)
    points, corners = index.shape
    offsets = torch.arange(0, points * corners, corners, device=index.device)
    bags = torch.arange(points, device=index.device).repeat_interleave(corners)
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        grad.contiguous(),
        table,
        index.reshape(-1),
        offsets,
        bags,
        0,  # mode 0: sum
    ).view(points, corners)


class _GatherWeighted(torch.autograd.Function):
    """``embedding_bag`` forward; ``table_gradient`` and ``weight_gradient`` backward.

    (torch's own embedding_bag backward sorts the indices first, 2-3x slower on CPU.)
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, index, weights)
        return F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        table, index, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_table = table_gradient(grad, index, weights, table.shape[0])
        if ctx.needs_input_grad[2]:
            grad_weights = weight_gradient(table, index, grad)
        return grad_table, None, grad_weights


def gather_weighted(table: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over corners of ``table[index] * weights``.

    Args:
        table: (T, F) values.
        index: (N, K) rows of ``table``.
        weights: (N, K) interpolation weights.
    Returns:
        (N, F), with memory at N x F and one gradient table written however many
        corners there are (first derivatives only).
    """
    return _GatherWeighted.apply(table, index, weights.to(table.dtype))


def cell_corners(coords: torch.Tensor, resolution: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer corner nodes (N, 2**D, D) and their multilinear weights (N, 2**D) of each point's cell."""
    base, frac = cell_positions(coords, resolution)
    offsets = corner_offsets(len(resolution), coords.device)
    return base[:, None, :] + offsets, corner_weights(frac, offsets)


def dense_corners(coords: torch.Tensor, resolution: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (N, 2**D) of a dense (prod(R), F) table and their weights (N, 2**D) at ``coords``."""
    nodes, weights = cell_corners(coords, resolution)
    return dense_index(nodes, resolution), weights


def interpolate_dense(table: torch.Tensor, coords: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """Multilinear interpolation of a dense grid stored as a (prod(R), F) table.

    Args:
        table: (R0 * R1 * ..., F), row ``i0 + R0 * (i1 + R1 * ...)`` holds node (i0, i1, ...).
        coords: (N, D) in [-1, 1]; column d indexes axis d (align_corners=True).
        resolution: (R0, ..., R_{D-1}) node counts, each >= 2.
    Returns:
        (N, F) interpolated values, differentiable in ``table`` and ``coords``.
    """
    return gather_weighted(table, *dense_corners(coords, resolution))


class GridCorners(NamedTuple):
    """Where a grid reads its table for each point, in P groups of K corners.

    ``index`` (N, P, K) rows of the grid's ``table``; ``weight`` (N, P, K) interpolation
    weights, differentiable in the coordinates; ``combine`` says how groups make features:

    * "sum": ``sum_p sum_k weight * table[index]``
    * "product": ``prod_p (1 + sum_k weight * table[index]) - 1``
    * "concat": the P group sums side by side (an encoding's levels)
    """

    index: torch.Tensor
    weight: torch.Tensor
    combine: str


def combine_corners(table: torch.Tensor, corners: GridCorners) -> torch.Tensor:
    """Features (N, F) — (N, P * F) for "concat" — of a (T, F) table read at ``corners``."""
    index, weight, combine = corners
    n, groups, k = index.shape
    if combine == "sum":
        return gather_weighted(table, index.reshape(n, groups * k), weight.reshape(n, groups * k))
    per_group = gather_weighted(table, index.reshape(n * groups, k), weight.reshape(n * groups, k))
    if combine == "concat":
        return per_group.reshape(n, groups * table.shape[1])
    return torch.prod(1.0 + per_group.reshape(n, groups, table.shape[1]), dim=1) - 1.0
