"""Optimizer parameter groups: grids at a higher learning rate than the MLP."""

from __future__ import annotations

import torch
from torch import nn

from camfields.modules.grids import FeatureGrid
from camfields.training.config import TrainConfig


def _grid_ids(model: nn.Module, modulation_only: bool = False) -> set[int]:
    """Ids of the parameters owned by ``FeatureGrid``s (only CAM modulation grids if asked)."""
    return {
        id(p)
        for module in model.modules()
        if isinstance(module, FeatureGrid) and (module.modulation or not modulation_only)
        for p in module.parameters()
    }


def split_grid_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(grid parameters, other parameters): grid ones are owned by a ``FeatureGrid``."""
    grid_ids = _grid_ids(model)
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if id(p) in grid_ids], [p for p in params if id(p) not in grid_ids]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the groups ``"mlp"`` at ``cfg.lr`` and ``"grid"`` at ``cfg.lr * cfg.grid_lr_mult``.

    With ``cfg.modulation_lr_mult`` set, the CAM modulation grids (``FeatureGrid.modulation``)
    form a third group ``"modulation"`` at ``cfg.lr * cfg.modulation_lr_mult``.
    Each group records its ``base_lr`` so that schedules can scale it.
    """
    grid, other = split_grid_parameters(model)
    own_group = set() if cfg.modulation_lr_mult is None else _grid_ids(model, modulation_only=True)
    named = [
        ("mlp", other, 1.0),
        ("grid", [p for p in grid if id(p) not in own_group], cfg.grid_lr_mult),
        ("modulation", [p for p in grid if id(p) in own_group], cfg.modulation_lr_mult),
    ]
    groups = [
        {"name": name, "params": params, "lr": cfg.lr * mult, "base_lr": cfg.lr * mult}
        for name, params, mult in named
        if params
    ]
    return torch.optim.Adam(groups, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
