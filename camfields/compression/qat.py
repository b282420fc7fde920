"""Quantization-aware training for any model: a hook that makes the loss read the model's
weights through their n-bit levels, and adds the rounding and rate terms.

From step ``start`` on, ``QuantizationSchedule.weights`` hands the training loop every
parameter on its symmetric n-bit levels with a straight-through gradient
(``compression.quantize.fake_quantize``); the loop evaluates the loss with those values in
place of the model's own (``training.hooks.read_through``), so every task's objective, whatever
method of its model it calls, trains what the file will hold. The penalties read the float
weights.

Example::

    >>> import torch
    >>> hook = QuantizationSchedule(start=2, steps=4, bits=4)
    >>> model = torch.nn.Linear(3, 2)
    >>> hook.weights(1, model) is None, sorted(hook.weights(2, model))
    (True, ['bias', 'weight'])
"""

from __future__ import annotations

import torch
from torch import nn

from camfields.compression.config import CompressionConfig
from camfields.compression.context import context_rate_bits, context_widths
from camfields.compression.quantize import fake_quantize, rounding_distance
from camfields.compression.rate import estimated_rate_bits, integer_magnitudes
from camfields.training.hooks import Hook


class QuantizationSchedule(Hook):
    """From step ``start`` on, the loss reads the model's parameters on their ``bits``-bit levels
    (one step per tensor, or with ``per_channel`` per output channel; with ``step_gradient`` the
    steps learn from the loss, see ``compression.quantize.fake_quantize``), and adds:

    - with ``dampening`` > 0, that weight, ramped up linearly from 0 at ``start`` to its full
      value at ``steps``, times the mean over all weights of their squared distance from their
      levels in steps (``compression.quantize.rounding_distance``);
    - with ``rate_weight`` > 0, that weight times the bits per pixel the weights are estimated to
      take once entropy-coded (``compression.rate``; ``pixels`` of the whole signal), so that the
      fit trades distortion (MSE) against rate at the slope ``rate_weight``.
    """

    def __init__(
        self,
        start: int,
        steps: int,
        bits: int,
        per_channel: bool = False,
        dampening: float = 0.0,
        rate_weight: float = 0.0,
        pixels: int = 1,
        step_gradient: bool = False,
    ):
        self.start, self.steps, self.bits, self.per_channel = start, steps, bits, per_channel
        self.dampening, self.rate_weight, self.pixels = dampening, rate_weight, pixels
        self.step_gradient = step_gradient

    def weights(self, step: int, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """Every parameter on its levels (straight-through) from step ``start`` on; None before."""
        if step < self.start:
            return None
        return {
            name: fake_quantize(p, self.bits, self.per_channel, self.step_gradient)
            for name, p in model.named_parameters()
        }

    def rate_bits(self, model: nn.Module) -> torch.Tensor:
        """Estimated bits of the model's weights once coded: the context-coded ones
        (``compression.context``) under shared per-context models, every other tensor alone."""
        widths = context_widths(model)
        named = dict(model.named_parameters())
        alone = [p for name, p in named.items() if name not in widths]
        bits = estimated_rate_bits(alone, self.bits, self.per_channel)
        if widths:
            magnitudes = [integer_magnitudes(named[name], self.bits) for name in widths]
            bits = bits + context_rate_bits(magnitudes, list(widths.values()))
        return bits

    def penalty(self, step: int, model: nn.Module) -> torch.Tensor | None:
        """The QAT terms added to the loss at training step ``step`` (None when none applies)."""
        if step < self.start or not (self.dampening or self.rate_weight):
            return None
        params = list(model.parameters())
        terms = []
        if self.dampening:
            ramp = min((step + 1 - self.start) / max(self.steps - self.start, 1), 1.0)
            distance = sum(rounding_distance(p, self.bits, self.per_channel) * p.numel() for p in params)
            terms.append(self.dampening * ramp * distance / sum(p.numel() for p in params))
        if self.rate_weight:
            terms.append(self.rate_weight * self.rate_bits(model) / self.pixels)
        return sum(terms[1:], terms[0])


def quantization_hooks(cfg: CompressionConfig, steps: int, pixels: int) -> list[Hook]:
    """The hook a ``[compression]`` block asks for over a fit of ``steps`` steps on a signal of
    ``pixels`` pixels (the rate term's unit): none when ``qat_fraction`` is 0 or ``bits`` is 0."""
    if not cfg.bits or not cfg.qat_fraction:
        return []
    start = cfg.qat_start(steps)
    return [
        QuantizationSchedule(
            start, steps, cfg.bits, cfg.per_channel, cfg.qat_dampening, cfg.rate_weight, pixels, cfg.step_gradient
        )
    ]
