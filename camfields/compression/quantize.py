"""Uniform n-bit quantization of weights, per tensor over its [min, max] range.

A tensor is stored as n-bit integers q in [0, 2^n - 1] plus its minimum and step (two
float32 numbers): ``w_hat = min + q * step`` with ``step = (max - min) / (2^n - 1)``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from camfields.errors import CamfieldsError

#: bytes of the per-tensor minimum and step (float32 each)
TENSOR_OVERHEAD_BYTES = 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 16:
        raise CamfieldsError(f"quantization bits must be in 1..16, got {bits}")


def quantize_tensor(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """``tensor`` rounded to the nearest of 2^bits evenly spaced levels over its own range."""
    _check_bits(bits)
    low, high = tensor.min(), tensor.max()
    step = (high - low) / (2**bits - 1)
    if step == 0:
        return tensor.clone()
    return low + torch.round((tensor - low) / step) * step


@torch.no_grad()
def quantized_copy(model: nn.Module, bits: int) -> nn.Module:
    """A deep copy of ``model`` whose every parameter is quantized to ``bits`` (buffers unchanged)."""
    _check_bits(bits)
    twin = copy.deepcopy(model)
    for parameter in twin.parameters():
        parameter.copy_(quantize_tensor(parameter, bits))
    return twin


def quantized_size_bytes(model: nn.Module, bits: int) -> int:
    """Bytes of the model's parameters at ``bits`` per weight, plus each tensor's range (no entropy coding)."""
    _check_bits(bits)
    return sum((p.numel() * bits + 7) // 8 + TENSOR_OVERHEAD_BYTES for p in model.parameters() if p.requires_grad)
