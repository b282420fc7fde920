"""Settings of the shared training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from camfields.config import check_choice
from camfields.errors import CamfieldsError

SCHEDULES = ("constant", "step", "cosine", "exponential")


@dataclass
class TrainConfig:
    """Optimizer, schedule, batching, seed and logging of one fit."""

    steps: int = 2000
    lr: float = 1e-3
    grid_lr_mult: float = 10.0  # learning-rate multiplier of every FeatureGrid parameter
    modulation_lr_mult: float | None = None  # multiplier of the CAM modulation grids; None = grid_lr_mult
    schedule: str = "step"  # constant | step | cosine | exponential
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
        if self.steps < 1:
            raise CamfieldsError(f"train.steps must be at least 1, got {self.steps}")
        modulation_mult = self.grid_lr_mult if self.modulation_lr_mult is None else self.modulation_lr_mult
        if self.lr <= 0 or self.grid_lr_mult <= 0 or modulation_mult <= 0:
            raise CamfieldsError("train.lr, train.grid_lr_mult and train.modulation_lr_mult must be positive")
        if self.batch_size < 0:
            raise CamfieldsError(f"train.batch_size must be 0 (full batch) or positive, got {self.batch_size}")
        if len(self.adam_betas) != 2:
            raise CamfieldsError(f"train.adam_betas must hold two numbers, got {self.adam_betas}")
        if min(self.checkpoint_every, self.log_every) < 1 or self.eval_every < 0:
            raise CamfieldsError("train.checkpoint_every and train.log_every must be >= 1, eval_every >= 0")
