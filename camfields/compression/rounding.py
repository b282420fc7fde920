"""Encoder-side rounding of a sigmoid output layer: which neighbouring level each weight takes.

Quantization-aware training leaves many weights next to a rounding boundary, so the weights a
fit ends with can round either way; for the last layer of a generator that choice alone can
move the PSNR by several dB (its inputs are large after normalisation and modulation). Given
that layer's inputs and the target, this picks, weight by weight, between the nearest level
and the other level next to the float weight, keeping whichever gives the lower squared error:
greedy coordinate descent that starts from plain rounding and never accepts a worse error.
The step of every tensor is kept: weights at the largest level of their step group stay put.
"""

from __future__ import annotations

import torch

from camfields.compression.quantize import symmetric_levels, symmetric_step


def _integers(tensor: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest integers, the other neighbour of each float weight (itself where it may not move) and the step."""
    step = symmetric_step(tensor, bits, per_channel)
    scaled = tensor.detach() / step
    nearest = torch.round(scaled)
    other = nearest + torch.sign(scaled - nearest)
    peak = nearest.abs().flatten(1).amax(1) if per_channel and tensor.dim() >= 2 else nearest.abs().max()
    peak = peak.view(-1, *[1] * (tensor.dim() - 1)) if peak.dim() else peak
    fixed = (nearest.abs() >= peak) | (other.abs() > symmetric_levels(bits))
    return nearest, torch.where(fixed, nearest, other), step


@torch.no_grad()
def round_sigmoid_head(
    features: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    bits: int,
    per_channel: bool = False,
    passes: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Levels of a 1x1 convolution + sigmoid head that fit ``target`` best, one weight at a time.

    Args:
        features: the head's input (N, C, H, W).
        target: the frames it should produce (N, K, H, W) in [0, 1].
        weight, bias: the head's float parameters, (K, C, 1, 1) and (K,).
        bits, per_channel: the quantizer of the bitstream (``compression.quantize.symmetric_step``).
        passes: sweeps over the weights; it stops early once a sweep changes nothing.
    Returns:
        The weight and bias on their chosen levels (float, ``integer * step`` exactly, the steps
        unchanged) and how many weights took the other level.
    """
    w_near, w_other, w_step = _integers(weight, bits, per_channel)
    b_near, b_other, b_step = _integers(bias, bits, per_channel)
    rows = len(weight)
    # every output channel k depends on its own weights and bias alone: [w_k1 .. w_kC, b_k]
    near = torch.cat([w_near.reshape(rows, -1), b_near[:, None]], 1)
    other = torch.cat([w_other.reshape(rows, -1), b_other[:, None]], 1)
    scale = torch.cat([w_step.expand_as(weight).reshape(rows, -1), b_step.expand_as(bias)[:, None]], 1)
    ones = torch.ones(1, features.numel() // features.shape[1], dtype=features.dtype, device=features.device)
    inputs = torch.cat([features.transpose(0, 1).reshape(features.shape[1], -1), ones])  # (C + 1, N * H * W)
    use_other = torch.zeros_like(near, dtype=torch.bool)
    for k in range(rows):
        goal = target[:, k].reshape(-1)

        def error(flags: torch.Tensor) -> float:
            levels = torch.where(flags, other[k], near[k]) * scale[k]
            return float(((torch.sigmoid(levels @ inputs) - goal) ** 2).mean())

        best = error(use_other[k])
        movable = torch.nonzero(other[k] != near[k]).flatten().tolist()
        for _ in range(passes):
            changed = False
            for i in movable:
                trial = use_other[k].clone()
                trial[i] = ~trial[i]
                score = error(trial)
                if score < best:
                    best, changed, use_other[k] = score, True, trial
            if not changed:
                break
    levels = torch.where(use_other, other, near) * scale
    return levels[:, :-1].reshape(weight.shape), levels[:, -1].clone(), int(use_other.sum())
