"""Grids against independent references: grid_sample for dense/plane grids, brute force for hashing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from camfields import CamfieldsError, DenseGrid, HashGrid, PlaneGrid
from camfields.modules.grids import HASH_PRIMES
from camfields.ops.interp import interpolate_dense


def grid_sample_reference(grid: DenseGrid, coords: torch.Tensor) -> torch.Tensor:
    """torch's grid_sample (align_corners=True) on the same grid, as (N, F)."""
    image = grid.as_image()[None]  # (1, F, ...)
    if grid.in_dim == 1:  # a 1D grid is a 2D grid of height 1
        image = image[:, :, None, :]
        coords = torch.cat([coords, torch.zeros_like(coords)], dim=1)
    shape = (1,) + (1,) * (image.dim() - 3) + (coords.shape[0], coords.shape[1])
    out = F.grid_sample(image, coords.reshape(shape), mode="bilinear", align_corners=True)
    return out.reshape(grid.out_features, -1).T


def random_coords(n: int, dim: int, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, dim, dtype=dtype) * 2 - 1


@pytest.mark.parametrize("resolution", [(7,), (5, 9), (4, 6, 3)])
def test_dense_grid_matches_grid_sample(resolution):
    grid = DenseGrid(resolution, features=5, init_scale=1.0)
    coords = random_coords(300, len(resolution)).requires_grad_()
    ours = grid(coords)
    ref = grid_sample_reference(grid, coords)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    cotangent = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, [coords, grid.table], cotangent)
    g_ref = torch.autograd.grad(ref, [coords, grid.table], cotangent)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_dense_grid_edges_hit_corner_nodes_exactly(dim):
    resolution = tuple(range(3, 3 + dim))
    grid = DenseGrid(resolution, features=2, init_scale=1.0)
    corners = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=dim)))
    values = grid(corners)
    nodes = torch.tensor(list(itertools.product((0, 1), repeat=dim)))
    for corner, node_is_last, value in zip(corners, nodes, values):
        index, stride = 0, 1
        for axis, size in enumerate(resolution):
            index += (size - 1 if node_is_last[axis] else 0) * stride
            stride *= size
        torch.testing.assert_close(value, grid.table[index].detach())
    torch.testing.assert_close(values, grid_sample_reference(grid, corners))


def test_dense_grid_interior_nodes_are_exact():
    grid = DenseGrid((5, 4), features=3, init_scale=1.0)
    i, j = 3, 2  # node (x index 3 of 5, y index 2 of 4)
    coords = torch.tensor([[-1 + 2 * i / 4, -1 + 2 * j / 3]])
    torch.testing.assert_close(grid(coords)[0], grid.table[i + 5 * j].detach())


def test_out_of_range_and_bad_shape_coordinates_are_clear_errors():
    grid = DenseGrid((4, 4), features=1)
    with pytest.raises(CamfieldsError, match=r"\[-1, 1\]"):
        grid(torch.tensor([[0.0, 1.5]]))
    with pytest.raises(CamfieldsError, match=r"shape \(N, 2\)"):
        grid(torch.zeros(3, 3))
    with pytest.raises(CamfieldsError, match="at least 2 nodes"):
        DenseGrid((1, 4), features=1)


def test_interpolation_float64_gradcheck():
    table = torch.randn(4 * 3, 2, dtype=torch.float64, requires_grad=True)
    coords = (torch.rand(6, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, c: interpolate_dense(t, c, (4, 3)), (table, coords))


@pytest.mark.parametrize("combine", ["sum", "product"])
@pytest.mark.parametrize("resolution", [(6, 5, 4), (5, 4, 6, 3)])
def test_plane_grid_matches_grid_sample_planes(combine, resolution):
    grid = PlaneGrid(resolution, features=3, combine=combine, init_scale=0.5)
    coords = random_coords(200, len(resolution))
    samples = []
    for k, (i, j) in enumerate(grid.axis_pairs):
        image = grid.plane_table(k).detach().T.reshape(1, 3, resolution[j], resolution[i])
        s = F.grid_sample(image, coords[:, [i, j]].reshape(1, 1, -1, 2), align_corners=True)
        samples.append(s.reshape(3, -1).T)
    expected = sum(samples) if combine == "sum" else math.prod(1 + s for s in samples) - 1
    assert len(grid.axis_pairs) == math.comb(len(resolution), 2)
    torch.testing.assert_close(grid(coords), expected, rtol=1e-5, atol=1e-5)


def brute_force_hash_grid(grid: HashGrid, coords: torch.Tensor) -> torch.Tensor:
    """Python-integer reference of the Instant-NGP hash encoding (concat over levels)."""
    table = grid.table.detach()
    out = []
    for point in coords.tolist():
        features = []
        for level, res in enumerate(grid.resolutions):
            pos = [(c + 1) / 2 * (res - 1) for c in point]
            base = [min(max(int(math.floor(p)), 0), res - 2) for p in pos]
            acc = torch.zeros(grid.features_per_level, dtype=table.dtype)
            for corner in itertools.product((0, 1), repeat=grid.in_dim):
                node = [b + c for b, c in zip(base, corner)]
                weight = math.prod((p - b) if c else 1 - (p - b) for p, b, c in zip(pos, base, corner))
                if res**grid.in_dim <= grid.table_size:
                    index = sum(n * res**axis for axis, n in enumerate(node))
                else:
                    index = 0
                    for axis, n in enumerate(node):
                        index ^= (n * HASH_PRIMES[axis]) & 0xFFFFFFFF
                    index %= grid.table_size
                acc += weight * table[grid.level_offsets[level] + index]
            features.append(acc)
        out.append(torch.cat(features))
    return torch.stack(out)


@pytest.mark.parametrize("in_dim", [2, 3])
def test_hash_grid_matches_brute_force(in_dim):
    grid = HashGrid(
        in_dim, levels=5, features_per_level=2, log2_table_size=8, base_resolution=3, growth=2.0, init_scale=1.0
    )
    assert any(grid.level_is_hashed(level) for level in range(grid.levels))
    assert not grid.level_is_hashed(0)
    coords = torch.cat(
        [random_coords(40, in_dim, torch.float64), torch.tensor([[1.0] * in_dim, [-1.0] * in_dim], dtype=torch.float64)]
    )
    grid = grid.double()
    torch.testing.assert_close(grid(coords), brute_force_hash_grid(grid, coords))


def test_hash_grid_direct_levels_index_every_node_once():
    grid = HashGrid(2, levels=2, log2_table_size=6, base_resolution=4, growth=2.0)
    res = grid.resolutions[1]  # 8 x 8 = 64 nodes = table size: direct
    nodes = torch.stack(torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij"), -1).reshape(-1, 2)
    index = grid.level_index(nodes, 1)
    assert sorted(index.tolist()) == list(range(res * res))


def test_hash_grid_sum_reduction_and_errors():
    grid = HashGrid(2, levels=3, features_per_level=4, log2_table_size=6, reduce="sum", init_scale=1.0)
    concat = HashGrid(2, levels=3, features_per_level=4, log2_table_size=6, reduce="concat")
    concat.load_state_dict(grid.state_dict())
    coords = random_coords(10, 2)
    torch.testing.assert_close(grid(coords), concat(coords).reshape(10, 3, 4).sum(1))
    with pytest.raises(CamfieldsError, match="reduction"):
        HashGrid(2, reduce="mean")
