"""The fused CUDA modulation op as an autograd function (see cuda/modulate.cu)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from camfields.ops.backend import load_extension

#: Activation codes of cuda/modulate.h.
ACTIVATION_CODES = {
    "none": 0,
    "relu": 1,
    "leaky_relu": 2,
    "softplus": 3,
    "sigmoid": 4,
    "tanh": 5,
    "silu": 6,
    "gelu": 7,
}


class FusedModulate(torch.autograd.Function):
    """act(norm(h) * gamma + beta) in one kernel; backward recomputes the norm from h."""

    @staticmethod
    def forward(ctx, h, gamma, beta, norm_code: int, groups: int, act_code: int, eps: float):
        module, _ = load_extension()
        ctx.args = (norm_code, groups, act_code, eps)
        ctx.save_for_backward(h, gamma, beta)
        return module.modulate_forward(h, gamma, beta, norm_code, groups, act_code, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        module, _ = load_extension()
        h, gamma, beta = ctx.saved_tensors
        grads = module.modulate_backward(grad_out.contiguous(), h, gamma, beta, *ctx.args)
        return (*grads, None, None, None, None)


def fused_modulate(
    h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, norm: str, groups: int, activation: str, eps: float
) -> torch.Tensor:
    """Call the fused kernels; shapes and names were checked by ``camfields.ops.modulate``."""
    dtype = h.dtype
    gamma, beta = gamma.to(dtype).contiguous(), beta.to(dtype).contiguous()
    norm_code = 0 if norm == "none" else 1
    norm_groups = groups if norm == "group" else 1
    return FusedModulate.apply(h.contiguous(), gamma, beta, norm_code, norm_groups, ACTIVATION_CODES[activation], eps)
