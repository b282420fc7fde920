"""Settings of the shared training loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from camfields.config import check_choice
from camfields.errors import CamfieldsError

SCHEDULES = ("constant", "step", "cosine", "exponential")

#: Most training steps a config may ask for (a typo such as 10**12 is refused, not run).
MAX_STEPS = 10**9


@dataclass
class TrainConfig:
    """Optimizer, schedule, batching, seed and logging of one fit."""

    steps: int = 2000
    lr: float = 1e-3
    grid_lr_mult: float = 10.0  # learning-rate multiplier of every FeatureGrid parameter
    modulation_lr_mult: float | None = None  # multiplier of the CAM modulation grids; None = grid_lr_mult
    schedule: str = "step"  # constant | step | cosine | exponential
    schedule_steps: int = 0  # steps the schedule spans (later steps: its final rate); 0 = steps
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of steps
    decay: float = 0.1  # step: lr factor at each milestone
    final_lr_ratio: float = 0.01  # cosine / exponential: lr at the last step over lr
    batch_size: int = 0  # coordinates per step; 0 = all (full batch)
    seed: int = 0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    checkpoint_every: int = 500
    log_every: int = 25  # progress bar and TensorBoard scalars
    eval_every: int = 0  # evaluation and TensorBoard images; 0 = at the end only

    def validate(self) -> None:
        """Raise a CamfieldsError for values the loop cannot use."""
        check_choice(self.schedule, SCHEDULES, "learning-rate schedule")
        modulation_mult = self.grid_lr_mult if self.modulation_lr_mult is None else self.modulation_lr_mult
        if self.lr <= 0 or self.grid_lr_mult <= 0 or modulation_mult <= 0:
            raise CamfieldsError("train.lr, train.grid_lr_mult and train.modulation_lr_mult must be positive")
        if self.batch_size < 0:
            raise CamfieldsError(f"train.batch_size must be 0 (full batch) or positive, got {self.batch_size}")
        if not all(math.isfinite(v) for v in (self.lr, self.grid_lr_mult, modulation_mult, self.final_lr_ratio)):
            raise CamfieldsError("train.lr, its multipliers and final_lr_ratio must be finite numbers")
        if not 1 <= self.steps <= MAX_STEPS:
            raise CamfieldsError(f"train.steps must be from 1 to {MAX_STEPS:,}, got {self.steps:,}")
        if not 0 <= self.schedule_steps <= MAX_STEPS:
            raise CamfieldsError(
                f"train.schedule_steps must be from 0 (the fit's steps) to {MAX_STEPS:,}, got {self.schedule_steps:,}"
            )
        if not 0 <= self.seed < 2**63:
            raise CamfieldsError(f"train.seed must be from 0 to 2**63 - 1, got {self.seed}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise CamfieldsError(f"train.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if not self.adam_eps > 0:
            raise CamfieldsError(f"train.adam_eps must be positive, got {self.adam_eps}")
        if not 0 < self.decay <= 1 or not 0 < self.final_lr_ratio <= 1:
            raise CamfieldsError(
                f"train.decay and train.final_lr_ratio must be in (0, 1], got {self.decay} and {self.final_lr_ratio}"
            )
        if any(not 0 < m <= 1 for m in self.milestones) or sorted(set(self.milestones)) != list(self.milestones):
            raise CamfieldsError(
                f"train.milestones must be increasing fractions of the steps in (0, 1], got {self.milestones}"
            )
        if min(self.checkpoint_every, self.log_every) < 1 or self.eval_every < 0:
            raise CamfieldsError("train.checkpoint_every and train.log_every must be >= 1, eval_every >= 0")
