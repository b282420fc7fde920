"""gather_weighted's backward (table_gradient, weight_gradient) against the straightforward formulas."""

from __future__ import annotations

import pytest
import torch

from camfields.ops import interp
from camfields.ops.interp import NARROW_MAX_COLUMNS, gather_weighted, table_gradient


def naive_table_gradient(grad, index, weights, rows):
    weighted = (grad[:, None, :] * weights[..., None]).reshape(-1, grad.shape[1])
    return torch.zeros(rows, grad.shape[1], dtype=grad.dtype).index_add_(0, index.reshape(-1), weighted)


def naive_weight_gradient(table, index, grad):
    return (table[index] * grad[:, None]).sum(-1)


def make_inputs(rows, points, corners, columns, dtype=torch.float64, collide=False, seed=0):
    """A (rows, columns) table, (points, corners) index and weights, a random (points, columns) cotangent."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, columns, generator=gen, dtype=dtype)
    index = torch.randint(0, rows, (points, corners), generator=gen)
    if collide and corners > 1:
        index[:, 1] = index[:, 0]  # a hash collision: one point reads the same row twice
    weights = torch.rand(points, corners, generator=gen, dtype=dtype)
    grad = torch.randn(points, columns, generator=gen, dtype=dtype)
    return table, index, weights, grad


def autograd_gradients(table, index, weights, grad):
    table, weights = table.clone().requires_grad_(), weights.clone().requires_grad_()
    return torch.autograd.grad(gather_weighted(table, index, weights), [table, weights], grad)


# (rows, points, corners, columns): narrow and wide (sparse, fused) tables, small and
# large, K = 1..8, rows read by many points; N = 1
CASES = [
    (8, 300, 4, 1),
    (8, 300, 4, 2),
    (5000, 700, 8, 2),
    (3, 50, 1, NARROW_MAX_COLUMNS),
    (8, 300, 4, NARROW_MAX_COLUMNS + 1),
    (5000, 700, 8, 16),
    (5000, 700, 6, 64),
    (64, 400, 2, 130),
    (4, 1, 3, 7),
    (4, 1, 3, 2),
    (50, 200, 5, 33),
]


@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("rows,points,corners,columns", CASES)
def test_gradients_equal_the_straightforward_formulas_in_float64(rows, points, corners, columns, collide):
    table, index, weights, grad = make_inputs(rows, points, corners, columns, collide=collide)
    grad_table, grad_weights = autograd_gradients(table, index, weights, grad)
    torch.testing.assert_close(grad_table, naive_table_gradient(grad, index, weights, rows), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_weights, naive_weight_gradient(table, index, grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows,columns", [(3000, 2), (3000, 64)])  # narrow, wide
def test_float32_gradients_match_to_summation_order(rows, columns):
    table, index, weights, grad = make_inputs(rows, 2000, 8, columns, dtype=torch.float32, collide=True)
    grad_table, grad_weights = autograd_gradients(table, index, weights, grad)
    expected = naive_table_gradient(grad.double(), index, weights.double(), rows).float()
    torch.testing.assert_close(grad_table, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_weights, naive_weight_gradient(table, index, grad), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("columns", [2, 12])
def test_no_points_gives_zero_gradients(columns):
    table, index, weights, grad = make_inputs(6, 0, 4, columns)
    grad_table, grad_weights = autograd_gradients(table, index, weights, grad)
    assert torch.equal(grad_table, torch.zeros(6, columns, dtype=table.dtype))
    assert grad_weights.shape == (0, 4)


@pytest.mark.parametrize("width", [1, 9])
def test_a_column_slice_of_a_wider_table(width):
    # grid_modulate reads table[:, column : column + 2 * width], a non-contiguous view
    full, index, weights, _ = make_inputs(40, 120, 4, 2 * width + 5)
    grad = torch.randn(120, 2 * width, dtype=full.dtype)
    full.requires_grad_()
    weights.requires_grad_()
    out = gather_weighted(full[:, 3 : 3 + 2 * width], index, weights)
    grad_full, grad_weights = torch.autograd.grad(out, [full, weights], grad)
    expected = torch.zeros_like(full)
    expected[:, 3 : 3 + 2 * width] = naive_table_gradient(grad, index, weights.detach(), 40)
    torch.testing.assert_close(grad_full, expected, rtol=1e-12, atol=1e-12)
    slice_ = full.detach()[:, 3 : 3 + 2 * width]
    torch.testing.assert_close(grad_weights, naive_weight_gradient(slice_, index, grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("columns", [2, 12])
def test_only_the_table_gradient(columns):
    table, index, weights, grad = make_inputs(30, 90, 4, columns)
    table.requires_grad_()
    (grad_table,) = torch.autograd.grad(gather_weighted(table, index, weights), [table], grad)
    torch.testing.assert_close(grad_table, naive_table_gradient(grad, index, weights, 30), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("columns", [2, 12])
def test_only_the_weight_gradient(columns):
    table, index, weights, grad = make_inputs(30, 90, 4, columns)
    weights.requires_grad_()
    (grad_weights,) = torch.autograd.grad(gather_weighted(table, index, weights), [weights], grad)
    torch.testing.assert_close(grad_weights, naive_weight_gradient(table, index, grad), rtol=1e-12, atol=1e-12)


def test_narrow_table_gradient_is_bit_identical_to_one_index_add():
    table, index, weights, grad = make_inputs(500, 3000, 8, NARROW_MAX_COLUMNS, dtype=torch.float32, collide=True)
    assert torch.equal(table_gradient(grad, index, weights, 500), naive_table_gradient(grad, index, weights, 500))


def test_cpu_algorithms_are_for_float_cpu_tensors_only():
    assert interp._cpu_float(torch.zeros(3, 2)) and interp._cpu_float(torch.zeros(3, 2, dtype=torch.float64))
    assert not interp._cpu_float(torch.zeros(3, 2, dtype=torch.bfloat16))
    assert not interp._cpu_float(torch.zeros(3, 2, device="meta"))  # CUDA keeps the plain formulas


def gradcheck_case(columns):
    table, index, weights, _ = make_inputs(6, 5, 4, columns, collide=True)
    return table.requires_grad_(), index, weights.requires_grad_()


@pytest.mark.parametrize(
    "columns,plain",
    [(NARROW_MAX_COLUMNS, False), (NARROW_MAX_COLUMNS + 3, False), (2, True), (NARROW_MAX_COLUMNS + 3, True)],
    ids=["narrow", "wide", "plain narrow (as on CUDA)", "plain wide (as on CUDA)"],
)
def test_gradcheck_each_branch(monkeypatch, columns, plain):
    if plain:
        monkeypatch.setattr(interp, "_cpu_float", lambda tensor: False)
    assert torch.autograd.gradcheck(gather_weighted, gradcheck_case(columns))


def test_table_gradient_of_half_precision_tables_uses_index_add():
    table, index, weights, grad = make_inputs(10, 40, 4, 6, dtype=torch.bfloat16)
    expected = naive_table_gradient(grad.double(), index, weights.double(), 10)
    torch.testing.assert_close(table_gradient(grad, index, weights, 10).double(), expected, rtol=0.05, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("columns", [2, 40])
def test_cuda_gradients_equal_the_cpu_ones(columns):
    table, index, weights, grad = make_inputs(500, 3000, 8, columns, collide=True)
    cpu = autograd_gradients(table, index, weights, grad)
    cuda = autograd_gradients(table.cuda(), index.cuda(), weights.cuda(), grad.cuda())
    for a, b in zip(cuda, cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-12, atol=1e-12)
