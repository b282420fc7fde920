"""Learning-rate schedules as pure functions of the step (so resuming needs no state)."""

from __future__ import annotations

import bisect
import math

from camfields.training.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``cfg.steps``.

    * constant: 1
    * step: ``decay ** k`` after k of the ``milestones`` (fractions of the steps) passed
    * cosine: from 1 down to ``final_lr_ratio`` along half a cosine
    * exponential: from 1 down to ``final_lr_ratio`` geometrically
    """
    progress = step / max(cfg.steps - 1, 1)
    if cfg.schedule == "step":
        passed = bisect.bisect_right(sorted(m * cfg.steps for m in cfg.milestones), step)
        return cfg.decay**passed
    if cfg.schedule == "cosine":
        r = cfg.final_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "exponential":
        return cfg.final_lr_ratio**progress
    return 1.0
