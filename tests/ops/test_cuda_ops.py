"""Fused CUDA kernels against the PyTorch reference (skipped without a GPU)."""

from __future__ import annotations

import functools

import pytest
import torch

from camfields import CAMMLP, DenseGrid, FourierFeatures, HashGrid, PlaneGrid, modulate
from camfields.ops.backend import cuda_extension_status
from camfields.ops.grid_modulate import grid_modulate
from camfields.ops.modulate import ACTIVATIONS
from camfields.ops.table_grad import SHARED_BYTES, WARPS_PER_BLOCK, TableGradPlan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module", autouse=True)
def extension():
    available, reason = cuda_extension_status()
    if not available:
        pytest.fail(f"the CUDA extension is unavailable on a GPU machine: {reason}")


def inputs(n, c, width, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    h = torch.randn(n, c, device="cuda", generator=g).to(dtype).requires_grad_()
    gamma = (1 + 0.5 * torch.randn(n, width, device="cuda", generator=g)).to(dtype).requires_grad_()
    beta = (0.5 * torch.randn(n, width, device="cuda", generator=g)).to(dtype).requires_grad_()
    return h, gamma, beta


def both_backends(h, gamma, beta, **kwargs):
    results = []
    for backend in ("torch", "cuda"):
        out = modulate(h, gamma, beta, backend=backend, **kwargs)
        cot = torch.randn_like(out, generator=torch.Generator(device="cuda").manual_seed(99))
        results.append((out, torch.autograd.grad(out, [h, gamma, beta], cot)))
    return results


@pytest.mark.parametrize("n", [1, 7, 129, 4097])
@pytest.mark.parametrize("c", [16, 33, 64, 256])
@pytest.mark.parametrize("norm,groups", [("none", 1), ("layer", 1), ("group", 4)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_modulate_matches_reference_float32(n, c, norm, groups, per_channel):
    if norm == "group" and c % groups:
        groups = 1
    h, gamma, beta = inputs(n, c, c if per_channel else 1, torch.float32, seed=n * 1000 + c)
    (ref, ref_grads), (out, grads) = both_backends(h, gamma, beta, norm=norm, groups=groups, activation="relu")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_fused_modulate_every_activation(activation):
    h, gamma, beta = inputs(300, 48, 48, torch.float32, seed=5)
    (ref, ref_grads), (out, grads) = both_backends(h, gamma, beta, norm="layer", activation=activation)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_modulate_half_precision_accumulates_in_float32(dtype):
    h, gamma, beta = inputs(1000, 128, 1, dtype, seed=3)
    ref = modulate(h.float(), gamma.float(), beta.float(), norm="layer", backend="torch")
    out = modulate(h, gamma, beta, norm="layer", backend="cuda")
    assert out.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


def test_fused_modulate_float64_gradcheck():
    h, gamma, beta = inputs(6, 40, 40, torch.float64, seed=11)
    assert torch.autograd.gradcheck(
        lambda *t: modulate(*t, norm="group", groups=4, activation="softplus", backend="cuda"), (h, gamma, beta)
    )
    h, gamma, beta = inputs(6, 40, 1, torch.float64, seed=12)
    assert torch.autograd.gradcheck(
        lambda *t: modulate(*t, norm="layer", activation="tanh", backend="cuda"), (h, gamma, beta)
    )


def test_cammlp_auto_backend_on_gpu_matches_torch_backend():
    torch.manual_seed(0)
    kwargs = dict(
        hidden=64,
        depth=3,
        encoding=FourierFeatures(2, 32, 5.0),
        grid=functools.partial(DenseGrid, (8, 8)),
        norm="layer",
        output_activation="sigmoid",
    )
    fused = CAMMLP(2, 3, backend="auto", **kwargs).cuda()
    reference = CAMMLP(2, 3, backend="torch", **kwargs).cuda()
    reference.load_state_dict(fused.state_dict())
    with torch.no_grad():
        fused.modulation.grid.table.normal_()
        reference.modulation.grid.table.copy_(fused.modulation.grid.table)
    x = torch.rand(5000, 2, device="cuda") * 2 - 1
    torch.testing.assert_close(fused(x), reference(x), rtol=1e-5, atol=1e-5)


GRIDS = {
    "dense1d": (1, lambda f: DenseGrid((9,), f)),
    "dense2d": (2, lambda f: DenseGrid((32, 32), f)),
    "dense3d": (3, lambda f: DenseGrid((6, 7, 5), f)),
    "triplane-product": (3, lambda f: PlaneGrid((16, 16, 16), f, combine="product")),
    "triplane-sum": (3, lambda f: PlaneGrid((16, 16, 16), f, combine="sum")),
    "kplanes": (4, lambda f: PlaneGrid((8, 8, 8, 5), f, combine="product")),
    "hash": (
        3,
        lambda f: HashGrid(
            3,
            levels=4,
            features_per_level=f,
            log2_table_size=10,
            base_resolution=4,
            growth=2.0,
            reduce="sum",
            init_scale=0.0,
        ),
    ),
}


def grid_case(kind, n, c, per_channel, dtype=torch.float32, seed=0, on_bounds=True):
    """(grid, coords (n, dim) with the first two exactly on -1 and +1 when ``on_bounds``, width)."""
    dim, factory = GRIDS[kind]
    torch.manual_seed(seed)
    width = c if per_channel else 1
    grid = factory(2 * 2 * width).cuda()  # two modulated layers
    with torch.no_grad():
        grid.table.normal_(0, 0.3)
    coords = torch.rand(n, dim, device="cuda") * 2 - 1
    if on_bounds:
        coords[: min(n, 2)] = torch.tensor([[-1.0] * dim, [1.0] * dim], device="cuda")[: min(n, 2)]
    return (
        grid.to(dtype if dtype == torch.float64 else torch.float32),
        coords.to(grid.table.dtype).requires_grad_(),
        width,
    )


def assert_grid_backends_agree(grid, coords, width, n, c, column=0, grad_atol=1e-4):
    """Fused and reference grid_modulate agree in output and in the h, table and coordinate gradients."""
    h = torch.randn(n, c, device="cuda", requires_grad=True)
    cot = torch.randn(n, c, device="cuda")
    results = []
    for backend in ("torch", "cuda"):
        out = grid_modulate(h, grid.table, grid.corners(coords), column, width, norm="layer", backend=backend)
        results.append((out, torch.autograd.grad(out, [h, grid.table, coords], cot)))
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for name, a, b in zip(("h", "table", "coords"), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=grad_atol, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("n,c", [(1, 32), (129, 33), (5000, 128)])
def test_fused_grid_modulate_matches_reference(kind, per_channel, n, c):
    grid, coords, width = grid_case(kind, n, c, per_channel, seed=n + c)
    assert_grid_backends_agree(grid, coords, width, n, c, column=2 * width)


@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_grid_modulate_many_points_on_a_small_table(per_channel):
    """200k points on a 32x32 grid: the backward spreads its atomics over private gradient tables."""
    grid, coords, width = grid_case("dense2d", 200_000, 40, per_channel, seed=7)
    assert_grid_backends_agree(grid, coords, width, 200_000, 40, grad_atol=1e-3)  # sums of 200k terms


@pytest.mark.parametrize("kind,per_channel", [("dense2d", True), ("triplane-product", True), ("hash", False)])
def test_fused_grid_modulate_float64_gradcheck(kind, per_channel):
    # Interior coordinates: at exactly -1 / +1 the coordinates are clamped, and a central
    # difference across the clamp disagrees with any one-sided derivative (the PyTorch
    # reference fails there too). Three channels keep the numerical Jacobian of the table small.
    grid, coords, width = grid_case(kind, 5, 3, per_channel, dtype=torch.float64, seed=4, on_bounds=False)
    h = torch.randn(5, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    table = grid.table.detach().clone().requires_grad_()

    def fn(h, table, coords):
        return grid_modulate(
            h, table, grid.corners(coords), 0, width, norm="layer", activation="softplus", backend="cuda"
        )

    assert torch.autograd.gradcheck(fn, (h, table, coords), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_grid_modulate_half_features(dtype):
    grid, coords, width = grid_case("dense2d", 3000, 64, False)
    h = torch.randn(3000, 64, device="cuda")
    ref = grid_modulate(h, grid.table, grid.corners(coords), 0, width, norm="layer", backend="torch")
    out = grid_modulate(h.to(dtype), grid.table, grid.corners(coords), 0, width, norm="layer", backend="cuda")
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)


def forced_plan(strategy: str):
    """A stand-in for plan_table_grad that always picks ``strategy``, in many small blocks."""

    def plan(points, rows, width2, corners_per_point, deterministic, element_size=4, target_blocks=528):
        if strategy != "shared":
            return TableGradPlan(strategy, chunks=3 if strategy == "global" else 0)
        copies = WARPS_PER_BLOCK if deterministic else 1
        tile_width = min(width2, 3, SHARED_BYTES // (copies * rows * element_size))
        if tile_width < 1:
            pytest.skip(f"{rows} rows do not fit a shared tile")
        chunk_points = max(1, points // 7)
        return TableGradPlan(
            "shared", tile_width, -(-width2 // tile_width), -(-points // chunk_points), chunk_points, copies
        )

    return plan


@pytest.mark.parametrize(
    "strategy,deterministic", [("shared", False), ("shared", True), ("global", False), ("sorted", True)]
)
@pytest.mark.parametrize("kind", ["dense2d", "triplane-product", "hash"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_every_table_gradient_strategy_matches_reference(strategy, deterministic, kind, per_channel, monkeypatch):
    from camfields.ops import grid_modulate as gm

    monkeypatch.setattr(gm, "plan_table_grad", forced_plan(strategy))
    grid, coords, width = grid_case(kind, 3000, 40, per_channel, seed=3)
    torch.use_deterministic_algorithms(deterministic)
    try:
        assert_grid_backends_agree(grid, coords, width, 3000, 40, column=2 * width, grad_atol=3e-4)
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("strategy", ["shared", "sorted"])
def test_float64_gradcheck_through_each_deterministic_strategy(strategy, monkeypatch):
    from camfields.ops import grid_modulate as gm

    monkeypatch.setattr(gm, "plan_table_grad", forced_plan(strategy))
    grid, coords, width = grid_case("dense2d", 5, 3, True, dtype=torch.float64, seed=6, on_bounds=False)
    h = torch.randn(5, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    table = grid.table.detach().clone().requires_grad_()

    def fn(h, table, coords):
        return grid_modulate(
            h, table, grid.corners(coords), 0, width, norm="layer", activation="softplus", backend="cuda"
        )

    torch.use_deterministic_algorithms(True)
    try:
        assert torch.autograd.gradcheck(fn, (h, table, coords), atol=1e-6)
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("kind,per_channel", [("dense2d", False), ("dense2d", True), ("triplane-product", False)])
def test_deterministic_backward_gives_the_same_bits_every_run(kind, per_channel):
    """200k points on a small table: under use_deterministic_algorithms the table gradient is
    bitwise identical across runs (the default, atomic path is not required to be)."""
    grid, coords, width = grid_case(kind, 200_000, 64, per_channel, seed=8)
    h = torch.randn(200_000, 64, device="cuda", requires_grad=True)
    cot = torch.randn(200_000, 64, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(3):
            out = grid_modulate(h, grid.table, grid.corners(coords), 0, width, norm="layer", backend="cuda")
            runs.append(torch.autograd.grad(out, [h, grid.table, coords], cot))
    finally:
        torch.use_deterministic_algorithms(False)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)
    assert_grid_backends_agree(grid, coords, width, 200_000, 64, grad_atol=1e-3)
