"""The model a video fit trains: a NeRV generator and its weight quantizer, and the hook that
prunes it (quantization-aware training is ``compression.qat.QuantizationSchedule``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from camfields.compression.quantize import fake_quantize
from camfields.modules.nerv import NeRVGenerator
from camfields.training.hooks import Hook


class VideoModel(nn.Module):
    """A generator and its weight quantizer (``bits``, one step per tensor or per output channel).

    Training reads the generator through its quantized weights once the fit's
    ``QuantizationSchedule`` starts (the loop substitutes them); evaluation asks for either
    explicitly.
    """

    def __init__(self, generator: NeRVGenerator, bits: int, per_channel: bool = False):
        super().__init__()
        self.generator, self.bits, self.per_channel = generator, bits, per_channel

    def quantized_parameters(self) -> dict[str, torch.Tensor]:
        return {name: fake_quantize(p, self.bits, self.per_channel) for name, p in self.generator.named_parameters()}

    def forward(self, times: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Frames (N, 3, H, W) at ``times`` (N,), through the quantized weights when ``quantized``."""
        if not quantized:
            return self.generator(times)
        return functional_call(self.generator, self.quantized_parameters(), (times,))


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
