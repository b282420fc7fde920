"""Symmetric n-bit quantization of weights, the one every ``.camf`` file uses.

A tensor is stored as integers q in [-(2^(n-1) - 1), 2^(n-1) - 1] times a bfloat16 step (one
per tensor, or one per output channel): ``w_hat = q * step`` with ``step`` = max |w| over the
2^(n-1) - 1 positive levels, rounded up (``symmetric_step``). ``fake_quantize`` is the same in
training (quantization-aware training), ``rounding_distance`` its dampening term.
"""

from __future__ import annotations

import torch

from camfields.errors import CamfieldsError


def check_bits(bits: int) -> None:
    if not 1 <= bits <= 16:
        raise CamfieldsError(f"quantization bits must be in 1..16, got {bits}")


def symmetric_levels(bits: int) -> int:
    """The largest integer magnitude of a symmetric ``bits``-bit code, 2^(bits-1) - 1."""
    return (1 << (bits - 1)) - 1


def round_up_to_bfloat16(values: torch.Tensor) -> torch.Tensor:
    """Positive finite float32 ``values`` rounded up to the nearest bfloat16 number (exactly 16 bits to store)."""
    bits = values.float().contiguous().view(torch.int32)
    return ((bits + 0xFFFF) & ~0xFFFF).view(torch.float32)


def peak_magnitude(tensor: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    """max |w| of the tensor (0-dim), or with ``per_channel`` of each slice along dim 0, shaped
    (C, 1, ...) to broadcast; tensors of fewer than 2 dims always get one. Differentiable."""
    magnitude = tensor.abs()
    if per_channel and tensor.dim() >= 2:
        return magnitude.flatten(1).amax(1).view(-1, *[1] * (tensor.dim() - 1))
    return magnitude.max()


def symmetric_step(tensor: torch.Tensor, bits: int, per_channel: bool = False) -> torch.Tensor:
    """Step of symmetric n-bit quantization: max |w| over the 2^(n-1) - 1 positive levels (1 if all
    zero), rounded up to a bfloat16 number so the file stores it in 16 bits and no weight clips.

    One step for the whole tensor (a 0-dim tensor), or with ``per_channel`` one per slice along
    dim 0 (output channels of a convolution, nodes of a grid), shaped (C, 1, ...) to broadcast;
    tensors of fewer than 2 dims (biases) always get one step.
    """
    check_bits(bits)
    peak = peak_magnitude(tensor.detach(), per_channel)
    return round_up_to_bfloat16(torch.where(peak > 0, peak / symmetric_levels(bits), torch.ones_like(peak)))


def symmetric_integers(tensor: torch.Tensor, bits: int, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Integers q in [-(2^(n-1) - 1), 2^(n-1) - 1] (int64, the tensor's shape) and the steps (float32,
    flat: 1 or one per channel) with ``w ~ q * step``; zero stays zero."""
    step = symmetric_step(tensor, bits, per_channel)
    return torch.round(tensor.detach() / step).long(), step.reshape(-1)


def fake_quantize(
    tensor: torch.Tensor, bits: int, per_channel: bool = False, step_gradient: bool = False
) -> torch.Tensor:
    """``tensor`` rounded to its symmetric n-bit levels in the forward pass, with a straight-through
    gradient (quantization-aware training). Without autograd the levels are returned exactly,
    equal bit for bit to what a decoder rebuilds from the integers and the steps.

    With ``step_gradient`` the step takes the loss's gradient too, as in learned step size
    quantization (LSQ, Esser et al. 2020): d level / d step = q - w / step, passed on to the
    largest weight, whose magnitude sets the step. The loss then weighs how coarse the levels
    are against the rate term, which alone would only ever widen them."""
    step = symmetric_step(tensor, bits, per_channel)
    integers = torch.round(tensor.detach() / step)
    if not torch.is_grad_enabled():
        return integers * step
    if not step_gradient:
        return tensor + (integers * step - tensor).detach()
    live = peak_magnitude(tensor, per_channel) / symmetric_levels(bits)
    step = step + (live - live.detach())  # the stored step's value, the peak's gradient
    scaled = tensor / step
    return (scaled - (scaled - integers).detach()) * step


def rounding_distance(tensor: torch.Tensor, bits: int, per_channel: bool = False) -> torch.Tensor:
    """Mean squared distance (0-dim, in [0, 1/4]) of every weight from its n-bit level, in units of
    its step, differentiable in the weights (the levels and steps are constants): a penalty that
    pulls weights onto their levels so that QAT stops flipping them across rounding boundaries."""
    step = symmetric_step(tensor, bits, per_channel)
    scaled = tensor / step
    return ((scaled - torch.round(scaled.detach())) ** 2).mean()
