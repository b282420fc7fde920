"""Fused CUDA kernels against the PyTorch reference (skipped without a GPU)."""

from __future__ import annotations

import functools

import pytest
import torch

from camfields import CAMMLP, DenseGrid, FourierFeatures, modulate
from camfields.ops.backend import cuda_extension_status
from camfields.ops.modulate import ACTIVATIONS

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
    kwargs = dict(hidden=64, depth=3, encoding=FourierFeatures(2, 32, 5.0), grid=functools.partial(DenseGrid, (8, 8)),
                  norm="layer", output_activation="sigmoid")
    fused = CAMMLP(2, 3, backend="auto", **kwargs).cuda()
    reference = CAMMLP(2, 3, backend="torch", **kwargs).cuda()
    reference.load_state_dict(fused.state_dict())
    with torch.no_grad():
        fused.modulation.grid.table.normal_()
        reference.modulation.grid.table.copy_(fused.modulation.grid.table)
    x = torch.rand(5000, 2, device="cuda") * 2 - 1
    torch.testing.assert_close(fused(x), reference(x), rtol=1e-5, atol=1e-5)
