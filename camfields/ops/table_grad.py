"""How the fused backward of grid modulation reduces a table gradient.

The backward (cuda/grid_modulate.cu) first writes each point's delta gradients ``ddelta``
(N, 2W), then reduces them into the gradient of the layer's table columns:

    grad_table[index[n, p, k], column + j] += weight[n, p, k] * factor_p(n, j) * ddelta[n, j]

Many points read few table rows (a 32x32 grid read by 2^20 pixels), so adding each term
with its own global atomic serialises on a few cache lines. ``plan_table_grad`` picks one of
three strategies of cuda/table_grad.cuh, by table size and by
``torch.are_deterministic_algorithms_enabled()``:

* ``"shared"``: the table's column tile fits in a block's shared memory. Blocks own (column
  tile, point chunk) pairs and accumulate there; then each entry goes to global memory once
  (an atomic per entry and block), or, deterministic, to a per-chunk partial table that a
  second kernel sums in chunk order (one shared copy per warp, equal addresses within a warp
  summed in lane order, copies summed in warp order: the same bits on every run).
* ``"global"``: larger tables, one thread per (point, column); equal addresses within a warp
  are summed before one atomic.
* ``"sorted"``: larger tables, deterministic: corners sorted stably by row, one thread per
  (row, column) sums its corners in point order.

Example:
    >>> plan_table_grad(points=2**20, rows=32 * 32, width2=2, corners_per_point=4, deterministic=False)
    TableGradPlan(strategy='shared', tile_width=2, tiles=1, chunks=528, chunk_points=1986, copies=1)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

#: The strategies, in the order of ``enum TableGradStrategy`` (cuda/modulate.h).
STRATEGIES = ("shared", "global", "sorted")

#: Shared memory one block may use (``kSharedBytes``), and warps per block (``kTableGradWarps``).
SHARED_BYTES = 48 * 1024
WARPS_PER_BLOCK = 4

#: Largest partial tables of the deterministic shared strategy, in bytes.
MAX_PARTIAL_BYTES = 256 * 2**20


class TableGradPlan(NamedTuple):
    """A launch plan of the table-gradient reduction (fields unused by a strategy are 0).

    ``tile_width`` columns per block and ``tiles`` = ceil(2W / tile_width) column tiles;
    ``chunks`` point chunks of ``chunk_points`` points (``chunks`` is the block count of the
    global strategy); ``copies`` shared copies per block (1, or one per warp when deterministic).
    Block ``b`` of the shared strategy takes tile ``b % tiles`` and chunk ``b // tiles``.
    """

    strategy: str
    tile_width: int = 0
    tiles: int = 0
    chunks: int = 0
    chunk_points: int = 0
    copies: int = 0

    def fields(self) -> list[int]:
        """The plan as the CUDA extension takes it (strategy as its enum code)."""
        return [STRATEGIES.index(self.strategy), *self[1:]]


def plan_table_grad(
    points: int,
    rows: int,
    width2: int,
    corners_per_point: int,
    deterministic: bool,
    element_size: int = 4,
    target_blocks: int = 528,
) -> TableGradPlan:
    """Choose how to reduce the table gradient of one layer.

    Args:
        points: N, points in the batch.
        rows: T, rows of the grid table.
        width2: 2W, the layer's table columns (gamma and beta deltas).
        corners_per_point: P * K, table rows each point reads.
        deterministic: the same bits on every run.
        element_size: bytes per table value (4 for float32, 8 for float64).
        target_blocks: blocks that fill the GPU (a few per multiprocessor).
    Returns:
        A ``TableGradPlan``. The shared strategy needs a tile of at least one column in
        ``SHARED_BYTES`` and more corner reads per block than table entries it must clear and add.
    """
    copies = WARPS_PER_BLOCK if deterministic else 1
    tile_width = min(width2, SHARED_BYTES // (copies * max(rows, 1) * element_size))
    reads = points * corners_per_point
    if tile_width >= 1 and reads >= rows * copies:
        tiles = math.ceil(width2 / tile_width)
        chunks = max(1, min(math.ceil(target_blocks / tiles), reads // (rows * copies)))
        if deterministic:
            chunks = max(1, min(chunks, MAX_PARTIAL_BYTES // (rows * width2 * element_size)))
        chunk_points = math.ceil(points / chunks)
        chunks = math.ceil(points / chunk_points)
        return TableGradPlan("shared", tile_width, tiles, chunks, chunk_points, copies)
    if deterministic:
        return TableGradPlan("sorted")
    threads = WARPS_PER_BLOCK * 32
    return TableGradPlan("global", chunks=max(1, min(8 * target_blocks, math.ceil(points * width2 / threads))))


@functools.cache
def target_blocks(device_index: int) -> int:
    """Blocks that fill CUDA device ``device_index`` (a tensor's ``get_device()``): four per multiprocessor."""
    return 4 * torch.cuda.get_device_properties(device_index).multi_processor_count
