"""Learning-rate schedules as pure functions of the step (so resuming needs no state)."""

from __future__ import annotations

import bisect
import math

from camfields.training.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a schedule spanning
    ``cfg.schedule_steps`` steps (0: ``cfg.steps``); past its span a schedule stays at its final rate.

    * constant: 1
    * step: ``decay ** k`` after k of the ``milestones`` (fractions of the span) passed
    * cosine: from 1 down to ``final_lr_ratio`` along half a cosine
    * exponential: from 1 down to ``final_lr_ratio`` geometrically

    Example: the image presets span 2000 steps, so a 300-step fit runs at the full rate and a
    2000-step fit decays at steps 1000 and 1500 (the reference's schedule)::

        >>> cfg = TrainConfig(steps=300, schedule_steps=2000, milestones=[0.5, 0.75], decay=0.1)
        >>> lr_factor(cfg, 299), round(lr_factor(TrainConfig(steps=2000, milestones=[0.5, 0.75]), 1500), 6)
        (1.0, 0.01)
    """
    span = cfg.schedule_steps or cfg.steps
    progress = min(step / max(span - 1, 1), 1.0)
    if cfg.schedule == "step":
        passed = bisect.bisect_right(sorted(m * span for m in cfg.milestones), step)
        return cfg.decay**passed
    if cfg.schedule == "cosine":
        r = cfg.final_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "exponential":
        return cfg.final_lr_ratio**progress
    return 1.0
