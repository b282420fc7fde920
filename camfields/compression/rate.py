"""A differentiable estimate of the bits an entropy coder spends on quantized weights.

The bitstream (format 4) codes each tensor's integers under a model of its own. Among all
distributions on the integers with a given mean magnitude E|k| = m, the two-sided geometric
``p(k) = (1 - t) / (1 + t) * t^|k|`` has the largest entropy, so its entropy bounds the bits per
weight of any histogram with that mean magnitude. Taking m as the mean of |w / step| over a
tensor's weights (continuous, so it has a gradient) gives a rate term a loss can trade against
distortion.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from camfields.compression.quantize import check_bits, peak_magnitude, symmetric_levels


def geometric_entropy_bits(mean_magnitude: torch.Tensor) -> torch.Tensor:
    """Entropy (bits per symbol, same shape) of the two-sided geometric distribution on the integers
    whose mean magnitude E|k| is ``mean_magnitude`` (>= 0; 0 gives 0 bits)."""
    m = mean_magnitude.clamp_min(1e-12)
    t = m / (torch.sqrt(1 + m * m) + 1)  # solves 2t / (1 - t^2) = m, stable for small m
    return torch.log2((1 + t) / (1 - t)) - m * torch.log2(t)


def integer_magnitudes(tensor: torch.Tensor, bits: int, per_channel: bool = False) -> torch.Tensor:
    """|w / step| (the tensor's shape) for the symmetric n-bit step of ``quantize.symmetric_step``,
    without its bfloat16 rounding and differentiable in the step too: scaling a tensor leaves
    its magnitudes unchanged, only the shape of its distribution moves them."""
    check_bits(bits)
    step = peak_magnitude(tensor, per_channel).clamp_min(torch.finfo(tensor.dtype).tiny) / symmetric_levels(bits)
    return tensor.abs() / step


def estimated_rate_bits(tensors: Iterable[torch.Tensor], bits: int, per_channel: bool = False) -> torch.Tensor:
    """Bits (0-dim) of coding the weights of ``tensors`` at ``bits``, each tensor under a model of
    its own, estimated as the sum over tensors of their weight count times
    ``geometric_entropy_bits`` of their mean integer magnitude."""
    return sum(t.numel() * geometric_entropy_bits(integer_magnitudes(t, bits, per_channel).mean()) for t in tensors)
