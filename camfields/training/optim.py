"""Optimizer parameter groups: grids at a higher learning rate than the MLP."""

from __future__ import annotations

import torch
from torch import nn

from camfields.modules.grids import FeatureGrid
from camfields.training.config import TrainConfig


def split_grid_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(grid parameters, other parameters): grid ones are owned by a ``FeatureGrid``."""
    grid_ids = {id(p) for module in model.modules() if isinstance(module, FeatureGrid) for p in module.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if id(p) in grid_ids], [p for p in params if id(p) not in grid_ids]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with two groups: ``"mlp"`` at ``cfg.lr`` and ``"grid"`` at ``cfg.lr * cfg.grid_lr_mult``.

    Each group records its ``base_lr`` so that schedules can scale it.
    """
    grid, other = split_grid_parameters(model)
    groups = [
        {"name": "mlp", "params": other, "lr": cfg.lr, "base_lr": cfg.lr},
        {"name": "grid", "params": grid, "lr": cfg.lr * cfg.grid_lr_mult, "base_lr": cfg.lr * cfg.grid_lr_mult},
    ]
    return torch.optim.Adam([g for g in groups if g["params"]], betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
