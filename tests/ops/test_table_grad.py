"""The table-gradient plans of the fused grid backward, replayed block by block in PyTorch.

``replay_plan`` is the torch twin of cuda/table_grad.cuh: it walks the same blocks (column
tile ``b % tiles``, point chunk ``b // tiles``), the same partial tables and the same sorted
segments as the kernels, so a plan that drops, repeats or misplaces a (point, column) term
fails here on the CPU, before any GPU runs it.
"""

from __future__ import annotations

import math

import pytest
import torch

from camfields import DenseGrid, HashGrid, PlaneGrid
from camfields.ops.interp import GridCorners, combine_corners
from camfields.ops.table_grad import (
    MAX_PARTIAL_BYTES,
    SHARED_BYTES,
    STRATEGIES,
    WARPS_PER_BLOCK,
    TableGradPlan,
    plan_table_grad,
)


def group_factors(table, corners: GridCorners, column: int, width2: int) -> torch.Tensor:
    """factor[n, p, j] = d delta_j / d s_p: 1 for a sum, prod_{q != p} (1 + s_q) (prefix times suffix)."""
    index, weight, combine = corners
    n, groups, _ = index.shape
    if combine == "sum":
        return torch.ones(n, groups, width2, dtype=table.dtype)
    s = (weight[..., None] * table[index][..., column : column + width2]).sum(2)  # (N, P, 2W)
    ones = torch.ones_like(s[:, :1])
    prefix = torch.cumprod(torch.cat([ones, 1 + s[:, :-1]], 1), 1)
    suffix = torch.cumprod(torch.cat([ones, 1 + s.flip(1)[:, :-1]], 1), 1).flip(1)
    return prefix * suffix


def replay_plan(plan: TableGradPlan, ddelta, table, corners: GridCorners, column: int) -> torch.Tensor:
    """grad_table (T, F) as the kernels of ``plan`` compute it, block by block."""
    index, weight, _ = corners
    n, groups, k = index.shape
    width2 = ddelta.shape[1]
    terms = weight[..., None] * (group_factors(table, corners, column, width2) * ddelta[:, None, :])[:, :, None]
    terms = terms.reshape(n, groups * k, width2)  # term of corner (p, k) to column j
    rows_of = index.reshape(n, groups * k)
    grad = torch.zeros_like(table)
    if plan.strategy == "shared":
        partials = torch.zeros(plan.chunks, table.shape[0], width2, dtype=table.dtype)
        for block in range(plan.tiles * plan.chunks):
            tile, chunk = block % plan.tiles, block // plan.tiles
            col0 = tile * plan.tile_width
            cols = slice(col0, min(width2, col0 + plan.tile_width))
            points = slice(chunk * plan.chunk_points, min(n, (chunk + 1) * plan.chunk_points))
            tile_sum = torch.zeros(table.shape[0], cols.stop - cols.start, dtype=table.dtype)
            tile_sum.index_add_(0, rows_of[points].reshape(-1), terms[points, :, cols].reshape(-1, tile_sum.shape[1]))
            partials[chunk, :, cols] += tile_sum
        grad[:, column : column + width2] = partials.sum(0)  # reduce_partials_kernel: chunk order
    elif plan.strategy == "global":
        grad[:, column : column + width2].index_add_(0, rows_of.reshape(-1), terms.reshape(-1, width2))
    else:
        sorted_rows, order = torch.sort(rows_of.reshape(-1), stable=True)
        segment_rows, counts = torch.unique_consecutive(sorted_rows, return_counts=True)
        ends = torch.cumsum(counts, 0)
        flat_terms = terms.reshape(-1, width2)
        for row, end, count in zip(segment_rows.tolist(), ends.tolist(), counts.tolist()):
            grad[row, column : column + width2] = flat_terms[order[end - count : end]].sum(0)
    return grad


def reference_table_grad(ddelta, table, corners: GridCorners, column: int) -> torch.Tensor:
    """The gradient by autograd through the PyTorch lookup that grid_modulate runs."""
    table = table.detach().clone().requires_grad_()
    deltas = combine_corners(table[:, column : column + ddelta.shape[1]], corners)
    (grad,) = torch.autograd.grad(deltas, table, ddelta)
    return grad


GRIDS = {
    "dense2d": (2, lambda f: DenseGrid((6, 5), f)),
    "triplane-product": (3, lambda f: PlaneGrid((5, 4, 6), f, combine="product")),
    "triplane-sum": (3, lambda f: PlaneGrid((5, 4, 6), f, combine="sum")),
    "hash": (
        3,
        lambda f: HashGrid(3, levels=3, features_per_level=f, log2_table_size=5, base_resolution=3, reduce="sum"),
    ),
}

PLANS = {
    "shared": TableGradPlan("shared", tile_width=3, tiles=0, chunks=0, chunk_points=7, copies=1),
    "shared-deterministic": TableGradPlan("shared", tile_width=2, tiles=0, chunks=0, chunk_points=40, copies=4),
    "global": TableGradPlan("global", chunks=3),
    "sorted": TableGradPlan("sorted"),
}


def covering(plan: TableGradPlan, n: int, width2: int) -> TableGradPlan:
    """``plan`` with its tile and chunk counts derived as plan_table_grad derives them."""
    if plan.strategy != "shared":
        return plan
    return plan._replace(tiles=math.ceil(width2 / plan.tile_width), chunks=math.ceil(n / plan.chunk_points))


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("plan_name", list(PLANS))
@pytest.mark.parametrize("width", [1, 5])
def test_every_plan_replays_to_the_reference_gradient(kind, plan_name, width):
    torch.manual_seed(len(kind) + width)
    dim, factory = GRIDS[kind]
    grid = factory(2 * 2 * width).double()  # two layers' columns; the second layer's are used
    with torch.no_grad():
        grid.table.normal_(0, 0.3)
    n, column = 101, 2 * width
    coords = torch.rand(n, dim, dtype=torch.float64) * 2 - 1
    coords[:2] = torch.tensor([[-1.0] * dim, [1.0] * dim])
    corners = grid.corners(coords)
    ddelta = torch.randn(n, 2 * width, dtype=torch.float64)
    plan = covering(PLANS[plan_name], n, 2 * width)
    got = replay_plan(plan, ddelta, grid.table.detach(), corners, column)
    torch.testing.assert_close(got, reference_table_grad(ddelta, grid.table, corners, column), rtol=1e-12, atol=1e-12)


def test_a_plan_that_misses_a_chunk_is_caught_by_the_replay():
    grid = DenseGrid((4, 4), 2).double()
    with torch.no_grad():
        grid.table.normal_()
    coords = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    corners, ddelta = grid.corners(coords), torch.randn(50, 2, dtype=torch.float64)
    short = TableGradPlan("shared", tile_width=2, tiles=1, chunks=4, chunk_points=10, copies=1)  # 40 of 50 points
    with pytest.raises(AssertionError):
        torch.testing.assert_close(
            replay_plan(short, ddelta, grid.table.detach(), corners, 0),
            reference_table_grad(ddelta, grid.table, corners, 0),
        )


CASES = [  # (points, rows, width2, corners per point): the goal table's layers and small fits
    (2**20, 32 * 32, 2, 4),  # dense 2D 32x32, scalar
    (2**20, 32 * 32, 256, 4),  # dense 2D 32x32, per channel (C = 128)
    (2**20, 3 * 128 * 128, 2, 12),  # tri-plane 3x128^2, scalar
    (2**20, 16 * 2**19, 2, 16 * 8),  # hash 16 levels x 2^19, scalar
    (512 * 512, 32 * 32, 2, 4),  # the image fit's layer
    (1, 32 * 32, 2, 4),
    (37, 9, 66, 2),
    (5000, 6 * 7 * 5, 256, 8),
]


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("element_size", [4, 8])
@pytest.mark.parametrize("points,rows,width2,corners", CASES)
def test_plans_cover_every_term_within_the_kernels_limits(points, rows, width2, corners, deterministic, element_size):
    plan = plan_table_grad(points, rows, width2, corners, deterministic, element_size)
    assert plan.strategy in STRATEGIES
    if deterministic:
        assert plan.strategy in ("shared", "sorted")  # never the atomics of "global"
        assert plan.strategy == "sorted" or plan.copies == WARPS_PER_BLOCK
    else:
        assert plan.strategy != "sorted" and plan.copies in (0, 1)
    if plan.strategy == "shared":
        assert plan.tiles == math.ceil(width2 / plan.tile_width) and plan.tiles * plan.tile_width >= width2
        assert plan.chunks == math.ceil(points / plan.chunk_points) and plan.chunk_points >= 1
        assert plan.copies * rows * plan.tile_width * element_size <= SHARED_BYTES
        assert plan.chunk_points * corners >= rows * plan.copies  # a block reads more than it clears
        if deterministic:
            assert plan.chunks * rows * width2 * element_size <= MAX_PARTIAL_BYTES
    if plan.strategy == "global":
        assert plan.chunks >= 1


def test_plans_put_small_tables_in_shared_memory_and_large_ones_elsewhere():
    dense = plan_table_grad(2**20, 32 * 32, 2, 4, deterministic=False)
    assert dense.strategy == "shared" and dense.tiles == 1 and dense.chunks > 100
    per_channel = plan_table_grad(2**20, 32 * 32, 256, 4, deterministic=True)
    assert per_channel.strategy == "shared" and per_channel.tile_width == 3
    assert plan_table_grad(2**20, 3 * 128 * 128, 2, 12, deterministic=False).strategy == "global"
    assert plan_table_grad(2**20, 3 * 128 * 128, 2, 12, deterministic=True).strategy == "sorted"
    assert plan_table_grad(3, 32 * 32, 2, 4, deterministic=False).strategy == "global"  # 12 reads, 1024 rows
    assert plan_table_grad(100, 32 * 32, 2, 4, deterministic=False).fields() == [1, 0, 0, 2, 0, 0]
