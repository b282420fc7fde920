"""The ``[compression]`` block every task's config holds: the weights' bit depth of the file a fit
writes, and how much of the fit trains through that quantizer (quantization-aware training)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from camfields.config import check_choice
from camfields.errors import CamfieldsError

#: one quantization step per tensor, or one per slice along dim 0 (see ``compression.quantize``)
QUANT_STEPS = ("tensor", "channel")


@dataclass
class CompressionConfig:
    """How a fit becomes a file.

    ``bits`` is the weights' bit depth of the file (2..16; a scene task also takes 0: no file).
    The last ``qat_fraction`` of the training steps read the weights through their ``bits``-bit
    levels (0: post-training quantization only); during those steps the loss adds
    ``qat_dampening`` (ramped up from 0) times the weights' mean squared distance from their
    levels, and ``rate_weight`` times their estimated bits per pixel once entropy-coded. With
    ``step_gradient`` each tensor's step learns from the loss too (``quantize.fake_quantize``).
    """

    bits: int = 8
    qat_fraction: float = 0.0
    qat_dampening: float = 0.01
    rate_weight: float = 0.0
    quant_steps: str = "tensor"
    step_gradient: bool = False

    def validate(self, allow_off: bool = False) -> None:
        """Check every setting; ``allow_off`` accepts ``bits = 0`` (no file, no quantization-aware training)."""
        check_choice(self.quant_steps, QUANT_STEPS, "compression.quant_steps")
        if not (2 <= self.bits <= 16 or (allow_off and self.bits == 0)):
            allowed = "0 (no file) or 2..16" if allow_off else "2..16"
            raise CamfieldsError(f"compression.bits must be {allowed}, got {self.bits}")
        if not 0 <= self.qat_fraction <= 1:
            raise CamfieldsError(f"compression.qat_fraction must be in [0, 1], got {self.qat_fraction}")
        if self.bits == 0 and self.qat_fraction > 0:
            raise CamfieldsError("compression.qat_fraction needs a bit depth: set compression.bits to 2..16")
        for name in ("qat_dampening", "rate_weight"):
            value = getattr(self, name)
            if not (0 <= value and math.isfinite(value)):
                raise CamfieldsError(f"compression.{name} must be a number >= 0, got {value}")

    @property
    def per_channel(self) -> bool:
        return self.quant_steps == "channel"

    def qat_start(self, steps: int) -> int:
        """The first step that trains through the quantizer, of ``steps`` (``steps`` when QAT is off)."""
        return steps - round(steps * self.qat_fraction) if self.bits else steps
