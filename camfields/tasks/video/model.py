"""The model a video fit trains: a NeRV generator read through its n-bit weights once
quantization-aware training starts, and the hooks that schedule QAT and pruning."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from camfields.compression.quantize import fake_quantize, rounding_distance
from camfields.compression.rate import estimated_rate_bits
from camfields.modules.nerv import NeRVGenerator
from camfields.training.hooks import Hook


class VideoModel(nn.Module):
    """A generator and its weight quantizer (``bits``, one step per tensor or per output channel).

    ``quantize`` says whether training reads the generator through its quantized weights
    (``QuantizationSchedule`` switches it on); evaluation asks for either explicitly.
    """

    def __init__(self, generator: NeRVGenerator, bits: int, per_channel: bool = False):
        super().__init__()
        self.generator, self.bits, self.per_channel = generator, bits, per_channel
        self.quantize = False

    def quantized_parameters(self) -> dict[str, torch.Tensor]:
        return {name: fake_quantize(p, self.bits, self.per_channel) for name, p in self.generator.named_parameters()}

    def forward(self, times: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Frames (N, 3, H, W) at ``times`` (N,), through the quantized weights when ``quantized``."""
        if not quantized:
            return self.generator(times)
        return functional_call(self.generator, self.quantized_parameters(), (times,))


class QuantizationSchedule(Hook):
    """From step ``start`` on, the model trains through its quantized weights, and the loss adds:

    - with ``dampening`` > 0, that weight, ramped up linearly from 0 at ``start`` to its full
      value at ``steps``, times the mean over all weights of their squared distance from their
      levels in steps (``compression.quantize.rounding_distance``);
    - with ``rate_weight`` > 0, that weight times the bits per pixel the weights are estimated to
      take once entropy-coded (``compression.rate``; ``pixels`` of the whole clip), so that the
      fit trades distortion (MSE) against rate at the slope ``rate_weight``.
    """

    def __init__(self, start: int, steps: int = 0, dampening: float = 0.0, rate_weight: float = 0.0, pixels: int = 1):
        self.start, self.steps, self.dampening, self.rate_weight, self.pixels = (
            start,
            steps,
            dampening,
            rate_weight,
            pixels,
        )

    def before_step(self, step: int, model: VideoModel, generator: torch.Generator) -> None:
        model.quantize = step >= self.start

    def penalty(self, step: int, model: VideoModel) -> torch.Tensor | None:
        """The QAT terms added to the MSE at training step ``step`` (None when none applies)."""
        if step < self.start or not (self.dampening or self.rate_weight):
            return None
        params = list(model.generator.parameters())
        terms = []
        if self.dampening:
            ramp = min((step + 1 - self.start) / max(self.steps - self.start, 1), 1.0)
            distance = sum(rounding_distance(p, model.bits, model.per_channel) * p.numel() for p in params)
            terms.append(self.dampening * ramp * distance / sum(p.numel() for p in params))
        if self.rate_weight:
            terms.append(self.rate_weight * estimated_rate_bits(params, model.bits, model.per_channel) / self.pixels)
        return sum(terms[1:], terms[0])


def prune_masks(generator: NeRVGenerator, fraction: float) -> dict[str, torch.Tensor]:
    """Masks keeping the largest ``1 - fraction`` of each convolution weight by magnitude."""
    masks = {}
    for name, p in generator.named_parameters():
        if name.startswith("convs.") and name.endswith("weight") and fraction > 0:
            k = int(p.numel() * fraction)
            threshold = p.detach().abs().flatten().kthvalue(max(k, 1)).values
            masks[name] = p.detach().abs() > threshold
    return masks


class MagnitudePruning(Hook):
    """From step ``start`` on, zero the smallest ``fraction`` of each convolution weight after every
    step (the masks are taken once, at the first step past ``start``, also after a resume)."""

    def __init__(self, start: int, fraction: float):
        self.start, self.fraction = start, fraction
        self.masks: dict[str, torch.Tensor] = {}

    def after_step(self, step: int, model: VideoModel) -> None:
        if step >= self.start and not self.masks:
            self.masks = prune_masks(model.generator, self.fraction)
        if self.masks:
            params = dict(model.generator.named_parameters())
            with torch.no_grad():
                for name, mask in self.masks.items():
                    params[name].mul_(mask)
