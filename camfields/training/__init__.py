"""The shared training loop, its config, optimizer groups, schedules and checkpoints."""

from camfields.training.config import TrainConfig
from camfields.training.loop import Evaluation, FitResult, Objective, train
from camfields.training.objectives import CoordinateRegression, predict
from camfields.training.optim import build_optimizer, split_grid_parameters

__all__ = [
    "CoordinateRegression",
    "Evaluation",
    "FitResult",
    "Objective",
    "TrainConfig",
    "build_optimizer",
    "predict",
    "split_grid_parameters",
    "train",
]
