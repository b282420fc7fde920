"""The hash-grid encoding op: its PyTorch path against a per-level reimplementation (CPU), the
fused CUDA kernels against the PyTorch path (GPU), and the optional tinycudann backend."""

from __future__ import annotations

import doctest
import importlib.util
import itertools
import json
import math

import pytest
import torch
from conftest import REPO

import camfields.ops.hash_encode as hash_encode_module
from camfields import CamfieldsError, HashGrid, HashGridEncoding
from camfields.ops.hash_encode import MAX_FUSED_LEVELS, HashLayout, hash_encode

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: Instant-NGP's published hash primes, written out again so that the test checks them.
PRIMES = (1, 2654435761, 805459861, 3674653429)

#: Table sizes (log2) giving each input dimension a dense first level and hashed finer ones
#: for base resolution 3 and growth 1.8 (3, 5, 9, 17, 31 nodes per axis).
LOG2_TABLE = {1: 3, 2: 6, 3: 6, 4: 7}


def tiny_grid(dim: int, reduce: str, features: int = 2, dtype=torch.float32, backend: str = "auto") -> HashGrid:
    grid = HashGrid(
        dim, 5, features, LOG2_TABLE[dim], base_resolution=3, growth=1.8, reduce=reduce, init_scale=1.0, backend=backend
    )
    assert not grid.level_is_hashed(0) and grid.level_is_hashed(grid.levels - 1)
    return grid.to(dtype)


def edge_coords(n: int, dim: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Random points plus the corners -1 / +1, a mixed corner and points just inside +1."""
    g = torch.Generator().manual_seed(n * 10 + dim)
    rand = torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 - 1
    edges = torch.tensor([[1.0] * dim, [-1.0] * dim, [1.0] + [-1.0] * (dim - 1), [1.0 - 1e-7] * dim])
    return torch.cat([rand, edges.double()]).to(dtype=dtype, device=device)


def per_level_reference(
    table: torch.Tensor, coords: torch.Tensor, resolutions: list[int], table_size: int, reduce: str
) -> torch.Tensor:
    """Instant-NGP's lookup written level by level from its definition (align_corners, [-1, 1])."""
    n, dim = coords.shape
    levels, offset = [], 0
    for res in resolutions:
        dense = res**dim <= table_size
        pos = (coords.clamp(-1, 1) + 1) / 2 * (res - 1)
        base = pos.detach().floor().clamp(0, res - 2)
        frac = pos - base
        features = 0
        for corner in itertools.product((0, 1), repeat=dim):
            node = base.long() + torch.tensor(corner)
            weight = torch.stack([frac[:, a] if c else 1 - frac[:, a] for a, c in enumerate(corner)]).prod(0)
            if dense:
                row = sum(node[:, a] * res**a for a in range(dim))
            else:
                row = torch.zeros(n, dtype=torch.long)
                for a in range(dim):
                    row = row ^ ((node[:, a] * PRIMES[a]) & 0xFFFFFFFF)
                row = row % table_size
            features = features + weight[:, None].to(table.dtype) * table[offset + row]
        levels.append(features)
        offset += min(res**dim, table_size)
    assert offset == table.shape[0]
    return torch.cat(levels, 1) if reduce == "concat" else sum(levels)


def reference_of(grid: HashGrid, table: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``per_level_reference`` for a ``tiny_grid`` (resolutions floor(3 * 1.8**l))."""
    resolutions = [math.floor(3 * 1.8**level) for level in range(grid.levels)]
    return per_level_reference(table, coords, resolutions, grid.table_size, grid.reduce)


# ---------------------------------------------------------------- CPU: the PyTorch path


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("reduce", ["concat", "sum"])
def test_hash_grid_equals_per_level_reimplementation(dim, reduce):
    grid = tiny_grid(dim, reduce, features=3, dtype=torch.float64)
    coords = edge_coords(30, dim, torch.float64).requires_grad_()
    out = grid(coords)
    ref = reference_of(grid, grid.table, coords)
    assert out.shape == (coords.shape[0], grid.out_features)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn_like(out)
    grads = torch.autograd.grad(out, [coords, grid.table], cotangent)
    ref_grads = torch.autograd.grad(ref, [coords, grid.table], cotangent)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the clamp's gradient: no coordinate gradient at (or beyond) -1 and +1
    assert torch.all(grads[0][-4:-1] == 0) and torch.any(grads[0][-1] != 0)


def test_hash_grid_encoding_equals_reimplementation_and_takes_a_backend():
    enc = HashGridEncoding(
        2, backend="torch", levels=5, features_per_level=2, log2_table_size=6, base_resolution=3, growth=1.8
    )
    assert enc.grid.backend == "torch" and enc.out_dim == 10
    coords = edge_coords(20, 2)
    torch.testing.assert_close(enc(coords), reference_of(enc.grid, enc.grid.table, coords))


def test_hash_encode_op_on_its_own_layout():
    layout = HashLayout(in_dim=2, resolutions=(3, 9), table_size=16)  # level 0 dense (9 rows), level 1 hashed
    assert layout.sizes == [9, 16] and layout.offsets == [0, 9] and layout.rows == 25
    table = torch.randn(layout.rows, 2, dtype=torch.float64)
    coords = edge_coords(10, 2, torch.float64)
    out = hash_encode(coords, table, layout, reduce="sum", backend="torch")
    torch.testing.assert_close(out, per_level_reference(table, coords, [3, 9], 16, "sum"))


def test_module_docstring_example_runs():
    result = doctest.testmod(hash_encode_module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0


def test_half_table_on_the_cpu():
    grid = tiny_grid(2, "concat").half()
    coords = edge_coords(40, 2).requires_grad_()  # float32 coordinates, float16 table
    out = grid(coords)
    assert out.dtype == torch.float16
    ref = reference_of(grid, grid.table.detach().float(), coords.detach())
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    assert grid.table.grad.dtype == torch.float16 and coords.grad.dtype == torch.float32
    assert grid.table.grad.abs().sum() > 0


def test_bad_tables_and_layouts_are_one_clear_error():
    layout = HashLayout(2, (3, 9), 16)
    coords = torch.zeros(4, 2)
    with pytest.raises(CamfieldsError, match=r"shape \(25, F\)"):
        hash_encode(coords, torch.zeros(24, 2), layout)
    with pytest.raises(CamfieldsError, match="floating point"):
        hash_encode(coords, torch.zeros(25, 2, dtype=torch.long), layout)
    with pytest.raises(CamfieldsError, match="is on meta"):
        hash_encode(coords, torch.zeros(25, 2, device="meta"), layout)
    with pytest.raises(CamfieldsError, match=r"must have shape \(N, 2\)"):
        hash_encode(torch.zeros(4, 3), torch.zeros(25, 2), layout)
    with pytest.raises(CamfieldsError, match="level reduction"):
        hash_encode(coords, torch.zeros(25, 2), layout, reduce="product")
    with pytest.raises(CamfieldsError, match="power of two"):
        HashLayout(2, (3, 9), 12)
    with pytest.raises(CamfieldsError, match="at least 2 nodes"):
        HashLayout(2, (1, 9), 16)


def test_backend_choice_errors():
    layout, table, coords = HashLayout(2, (3,), 16), torch.zeros(9, 2), torch.zeros(4, 2)
    with pytest.raises(CamfieldsError, match="unknown backend 'gpu'"):
        hash_encode(coords, table, layout, backend="gpu")
    with pytest.raises(CamfieldsError, match="unknown backend 'gpu'"):
        HashGrid(2, backend="gpu")
    with pytest.raises(CamfieldsError, match="needs CUDA tensors"):
        hash_encode(coords, table, layout, backend="cuda")


def test_more_levels_than_the_kernel_takes():
    grid = HashGrid(1, levels=MAX_FUSED_LEVELS + 1, log2_table_size=4, base_resolution=2, growth=1.0)
    coords = edge_coords(5, 1)
    assert grid(coords).shape == (9, 2 * (MAX_FUSED_LEVELS + 1))  # "auto" uses PyTorch
    with pytest.raises(CamfieldsError, match=f"at most {MAX_FUSED_LEVELS} levels"):
        hash_encode(coords, grid.table, grid.layout, backend="cuda")


def test_deterministic_mode_refuses_the_atomic_kernels():
    grid = tiny_grid(2, "sum")
    coords = edge_coords(10, 2)
    expected = grid(coords)
    torch.use_deterministic_algorithms(True)
    try:
        torch.testing.assert_close(grid(coords), expected, rtol=0, atol=0)  # "auto": the PyTorch path
        with pytest.raises(CamfieldsError, match="use_deterministic_algorithms"):
            hash_encode(coords, grid.table, grid.layout, "sum", backend="cuda")
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.skipif(
    importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available(),
    reason="tinycudann and a GPU are present: the tcnn backend is usable here",
)
def test_tcnn_backend_unavailable_is_one_clear_error():
    with pytest.raises(CamfieldsError, match="tinycudann|CUDA GPU"):
        HashGridEncoding(3, backend="tcnn", levels=4)


def test_tcnn_backend_checks_its_feature_count_first():
    with pytest.raises(CamfieldsError, match="1, 2, 4 or 8 features"):
        HashGridEncoding(3, backend="tcnn", features_per_level=3)


# ---------------------------------------------------------------- GPU: fused kernels vs PyTorch


@pytest.fixture
def extension():
    from camfields.ops.backend import cuda_extension_status

    available, reason = cuda_extension_status()
    if not available:
        pytest.fail(f"the CUDA extension is unavailable on a GPU machine: {reason}")


def both_backends(grid: HashGrid, coords: torch.Tensor, table: torch.Tensor, seed: int):
    """(output, coordinate gradient, table gradient) of the PyTorch and the fused path."""
    results = []
    for backend in ("torch", "cuda"):
        x = coords.detach().clone().requires_grad_()
        t = table.detach().clone().requires_grad_()
        out = hash_encode(x, t, grid.layout, grid.reduce, backend=backend)
        cot = torch.randn(out.shape, generator=torch.Generator(device="cuda").manual_seed(seed), device="cuda")
        results.append((out, *torch.autograd.grad(out, [x, t], cot.to(out.dtype))))
    return results


def assert_close_scaled(got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    """Close to ``rtol`` of each value, or of the largest one for values near zero."""
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(want.abs().max().item(), 1e-3))


@needs_gpu
@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("reduce", ["concat", "sum"])
@pytest.mark.parametrize("features", [2, 9])
def test_fused_matches_torch_float32(extension, dim, reduce, features):
    grid = tiny_grid(dim, reduce, features).cuda()
    coords = edge_coords(2000, dim, device="cuda")
    (ref, *ref_grads), (out, *grads) = both_backends(grid, coords, grid.table, seed=dim)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        assert_close_scaled(got, want, 1e-4)


@needs_gpu
@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("reduce", ["concat", "sum"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_half_tables(extension, dim, reduce, dtype):
    grid = tiny_grid(dim, reduce).cuda()
    coords = edge_coords(2000, dim, device="cuda")
    low = grid.table.detach().to(dtype)
    (ref, *ref_grads), (out, *grads) = both_backends(grid, coords, low.float(), seed=7)  # exact values, float math
    _, (half_out, *half_grads) = both_backends(grid, coords, low, seed=7)
    assert half_out.dtype == dtype and half_grads[1].dtype == dtype and half_grads[0].dtype == torch.float32
    rtol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    assert_close_scaled(half_out.float(), ref, rtol)
    for got, want in zip(half_grads, ref_grads):
        assert_close_scaled(got.float(), want, 4 * rtol)


@needs_gpu
def test_fused_realistic_grid_and_empty_input(extension):
    grid = HashGrid(3, levels=16, log2_table_size=19, base_resolution=16, growth=1.5, init_scale=0.1).cuda()
    coords = torch.rand(20000, 3, device="cuda") * 2 - 1
    (ref, *ref_grads), (out, *grads) = both_backends(grid, coords, grid.table, seed=3)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        assert_close_scaled(got, want, 1e-4)
    empty = hash_encode(coords[:0], grid.table, grid.layout, backend="cuda")
    assert empty.shape == (0, grid.out_features)


@needs_gpu
@pytest.mark.parametrize("dim,reduce", [(1, "sum"), (2, "concat"), (3, "sum")])
def test_fused_float64_gradcheck(extension, dim, reduce):
    grid = HashGrid(dim, 3, 2, LOG2_TABLE[dim] - 1, base_resolution=3, growth=2.0, reduce=reduce, init_scale=1.0)
    grid = grid.double().cuda()
    assert grid.level_is_hashed(2)
    coords = (torch.rand(8, dim, dtype=torch.float64, device="cuda") * 1.6 - 0.8).requires_grad_()
    table = grid.table.detach().clone().requires_grad_()

    def encode(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return hash_encode(x, t, grid.layout, reduce, backend="cuda")

    assert torch.autograd.gradcheck(encode, (coords, table))


@needs_gpu
def test_auto_backend_routes_cuda_tensors_to_the_kernel(extension, monkeypatch):
    calls = []
    apply = hash_encode_module.FusedHashEncode.apply
    monkeypatch.setattr(hash_encode_module.FusedHashEncode, "apply", lambda *a: calls.append(1) or apply(*a))
    grid = tiny_grid(2, "concat").cuda()
    grid(edge_coords(10, 2, device="cuda"))
    assert calls == [1]
    torch.use_deterministic_algorithms(True)
    try:
        grid(edge_coords(10, 2, device="cuda"))  # deterministic: the PyTorch path
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls == [1]


# ---------------------------------------------------------------- tinycudann (optional)


def fit_psnr(encoding: torch.nn.Module, steps: int = 300) -> float:
    """PSNR (dB) of encoding + linear head fitted to a 64x64 two-tone pattern."""
    torch.manual_seed(0)
    axis = torch.linspace(-1, 1, 64, device="cuda")
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    disc = (coords.norm(dim=1, keepdim=True) < 0.5).float()
    target = 0.5 + 0.25 * torch.sin(6 * coords[:, :1]) * torch.cos(9 * coords[:, 1:]) + 0.2 * disc
    model = torch.nn.Sequential(encoding, torch.nn.Linear(encoding.out_dim, 1)).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.mean((model(coords) - target) ** 2)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mse = torch.mean((model(coords).clamp(0, 1) - target) ** 2).item()
    return -10 * math.log10(mse)


@needs_gpu
@pytest.mark.skipif(importlib.util.find_spec("tinycudann") is None, reason="tinycudann is not installed (optional)")
def test_tcnn_backend_fits_like_the_fused_twin(extension):
    settings = dict(levels=8, features_per_level=2, log2_table_size=12, base_resolution=4, growth=1.5)
    tcnn = HashGridEncoding(2, backend="tcnn", **settings)
    assert tcnn.out_dim == 16 and tcnn(torch.zeros(3, 2, device="cuda")).shape == (3, 16)
    ours = fit_psnr(HashGridEncoding(2, backend="cuda", **settings))
    theirs = fit_psnr(tcnn)
    assert ours > 25 and theirs > ours - 2.0, (ours, theirs)
    with pytest.raises(CamfieldsError, match="on the CPU"):
        tcnn(torch.zeros(3, 2))


# ---------------------------------------------------------------- benchmark script (CPU dry run)


def test_bench_hash_encode_dry_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_hash_encode

    out = tmp_path / "bench.json"
    bench_hash_encode.main(["--device", "cpu", "--tiny", "--dims", "2", "--dtypes", "float16", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["dim"] == 2 and row["table_dtype"] == "float16" and row["points"] == 1024
    for backward in ("none", "table", "coords"):
        assert row[f"torch_{backward}_ms"] > 0 and row[f"fused_{backward}_ms"] > 0
        assert row[f"speedup_{backward}"] == row[f"torch_{backward}_ms"] / row[f"fused_{backward}_ms"]
    with pytest.raises(CamfieldsError, match="--dtypes"):
        bench_hash_encode.main(["--device", "cpu", "--dtypes", "float8", "--out", str(out)])
