"""Multilinear interpolation on regular grids: the reference used by every grid.

Coordinate convention (used throughout camfields): coordinates lie in
``[-1, 1]`` and grids follow ``align_corners=True``: along an axis with ``R``
nodes, ``-1`` is exactly node ``0`` and ``+1`` is exactly node ``R - 1``.
This matches ``torch.nn.functional.grid_sample(..., align_corners=True)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch

from camfields.errors import CamfieldsError

#: Tolerance when checking that coordinates lie in [-1, 1].
COORD_TOLERANCE = 1e-5


def check_coords(coords: torch.Tensor, in_dim: int, what: str = "coordinates") -> None:
    """Raise a CamfieldsError unless ``coords`` is a float (N, in_dim) tensor in [-1, 1]."""
    if not isinstance(coords, torch.Tensor):
        raise CamfieldsError(f"{what} must be a torch.Tensor, got {type(coords).__name__}")
    if coords.dim() != 2 or coords.shape[1] != in_dim:
        raise CamfieldsError(f"{what} must have shape (N, {in_dim}), got {tuple(coords.shape)}")
    if not coords.is_floating_point():
        raise CamfieldsError(f"{what} must be floating point, got {coords.dtype}")
    if coords.numel() == 0:
        return
    lo, hi = torch.aminmax(coords.detach())
    if lo.item() < -1.0 - COORD_TOLERANCE or hi.item() > 1.0 + COORD_TOLERANCE:
        raise CamfieldsError(f"{what} must lie in [-1, 1]; got values from {lo.item():.4g} to {hi.item():.4g}")


def corner_offsets(dim: int, device: torch.device) -> torch.Tensor:
    """The 2**dim corner offsets of a unit cell, (2**dim, dim) int64, axis 0 varying slowest."""
    return torch.tensor(list(itertools.product((0, 1), repeat=dim)), dtype=torch.long, device=device)


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
    res = torch.tensor(resolution, dtype=coords.dtype, device=coords.device)
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


def gather_weighted(table: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over corners of ``table[index] * weights``.

    Args:
        table: (T, F) values.
        index: (N, K) rows of ``table``.
        weights: (N, K) interpolation weights.
    Returns:
        (N, F). Corners are accumulated one at a time so memory stays at N x F.
    """
    out = table[index[:, 0]] * weights[:, 0:1].to(table.dtype)
    for k in range(1, index.shape[1]):
        out = out + table[index[:, k]] * weights[:, k : k + 1].to(table.dtype)
    return out


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
    if combine == "sum":
        return gather_weighted(table, index.flatten(1), weight.flatten(1))
    groups = [gather_weighted(table, index[:, p], weight[:, p]) for p in range(index.shape[1])]
    if combine == "concat":
        return torch.cat(groups, dim=-1)
    out = 1.0 + groups[0]
    for group in groups[1:]:
        out = out * (1.0 + group)
    return out - 1.0
