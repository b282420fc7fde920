"""Grid modulation of one layer: gamma and beta read from a grid table, then ``modulate``.

    delta_j = combine(table[:, column + j * width : column + (j + 1) * width] at the corners)
    out = act(norm(h) * (1 + delta_0) + delta_1)

The PyTorch path gathers (gamma, beta) and calls ``modulate``; the CUDA path
(cuda/grid_modulate.cu) does it in one kernel without writing gamma or beta to memory, and
reduces the table gradient as ``camfields.ops.table_grad`` plans it: without contention, and
in a fixed order under ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from camfields.errors import CamfieldsError
from camfields.ops.backend import load_extension, resolve_backend
from camfields.ops.cuda_modulate import ACTIVATION_CODES
from camfields.ops.interp import GridCorners, combine_corners
from camfields.ops.modulate import check_norm, get_activation, modulate
from camfields.ops.table_grad import plan_table_grad, target_blocks

#: Most corner groups the fused kernel combines by product.
MAX_PRODUCT_GROUPS = 8


class FusedGridModulate(torch.autograd.Function):
    """The CUDA kernels; gradients flow to h, the table and (for coordinates) the weights."""

    @staticmethod
    def forward(ctx, h, table, weight, index, column, width, product, norm_code, groups, act_code, eps):
        module, _ = load_extension()
        ctx.args = (column, width, product, norm_code, groups, act_code, eps)
        ctx.save_for_backward(h, table, weight, index)
        return module.grid_modulate_forward(h, table, index, weight, *ctx.args)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        module, _ = load_extension()
        h, table, weight, index = ctx.saved_tensors
        plan = plan_table_grad(
            points=h.shape[0],
            rows=table.shape[0],
            width2=2 * ctx.args[1],
            corners_per_point=index.shape[1] * index.shape[2],
            deterministic=torch.are_deterministic_algorithms_enabled(),
            element_size=table.element_size(),
            target_blocks=target_blocks(h.get_device()),
        )
        grad_h, grad_table, grad_weight = module.grid_modulate_backward(
            grad_out.contiguous(), h, table, index, weight, *ctx.args, ctx.needs_input_grad[2], plan.fields()
        )
        return grad_h, grad_table, (grad_weight if ctx.needs_input_grad[2] else None), *([None] * 8)


def grid_modulate(
    h: torch.Tensor,
    table: torch.Tensor,
    corners: GridCorners,
    column: int,
    width: int,
    norm: str = "none",
    groups: int = 1,
    activation: str = "relu",
    eps: float = 1e-5,
    backend: str = "auto",
) -> torch.Tensor:
    """Modulate one layer with (gamma, beta) read from a grid.

    Args:
        h: (N, C) pre-activations.
        table: (T, F) grid values (a grid's ``table``).
        corners: ``grid.corners(coords)``: (N, P, K) rows and weights, combined by sum or product.
        column: first table column of this layer's deltas.
        width: 1 (one gamma and beta shared by the channels) or C (one per channel).
        norm, groups, activation, eps, backend: as in ``camfields.ops.modulate``.
    Returns:
        (N, C) ``act(norm(h) * (1 + delta_0) + delta_1)``.
    """
    if h.dim() != 2 or width not in (1, h.shape[1]):
        raise CamfieldsError(f"grid modulation needs h (N, C) and width 1 or C, got {tuple(h.shape)}, width {width}")
    if not 0 <= column <= table.shape[1] - 2 * width:
        raise CamfieldsError(f"columns {column}..{column + 2 * width - 1} lie outside a table of {table.shape[1]}")
    if corners.combine not in ("sum", "product"):
        raise CamfieldsError(f"grid modulation combines corner groups by sum or product, not {corners.combine!r}")
    check_norm(norm, h.shape[1], groups)
    get_activation(activation)
    if resolve_backend(backend, h, table) == "cuda" and (
        corners.combine == "sum" or corners.index.shape[1] <= MAX_PRODUCT_GROUPS
    ):
        table_dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
        return FusedGridModulate.apply(
            h.contiguous(),
            table.to(table_dtype).contiguous(),
            corners.weight.to(table_dtype).contiguous(),
            corners.index.contiguous(),
            column,
            width,
            int(corners.combine == "product"),
            0 if norm == "none" else 1,
            groups if norm == "group" else 1,
            ACTIVATION_CODES[activation],
            eps,
        )
    deltas = combine_corners(table[:, column : column + 2 * width], corners)
    return modulate(h, 1.0 + deltas[:, :width], deltas[:, width:], norm, groups, activation, eps, backend="torch")
