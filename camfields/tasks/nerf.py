"""NeRF-style novel view synthesis: a radiance field and its occupancy grid fitted to posed images.

So far this holds the model container and the ray-batch objective used with the shared
training loop; the fit entry point, presets, evaluation and benchmark follow.
"""

from __future__ import annotations

import torch
from torch import nn

from camfields.metrics import mse_to_psnr, psnr
from camfields.modules.radiance import RadianceField
from camfields.render.occupancy import OccupancyGrid
from camfields.render.radiance import render_rays
from camfields.training.loop import Evaluation


class NeRFModel(nn.Module):
    """A radiance field with its occupancy grid (both saved in checkpoints) and a step counter."""

    def __init__(self, field: RadianceField, grid: OccupancyGrid):
        super().__init__()
        self.field, self.grid = field, grid
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))


class RayObjective:
    """Photometric MSE on random rays drawn across all training pixels.

    Every ``update_every`` steps the occupancy grid is refreshed from the field's density
    (after ``warmup`` steps with every cell occupied).

    Args:
        origins, directions: (R, 3) rays of every training pixel (unit directions).
        colors: (R, 3) their target colours in [0, 1].
        batch_size: rays per step.
        step: sample spacing along rays.
        background: (3,) colour behind the scene.
    """

    def __init__(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        colors: torch.Tensor,
        batch_size: int,
        step: float,
        background: torch.Tensor,
        update_every: int = 16,
        warmup: int = 64,
    ):
        self.origins, self.directions, self.colors = origins, directions, colors
        self.batch_size, self.step, self.background = batch_size, step, background
        self.update_every, self.warmup = update_every, warmup
        self._seen: int | None = None  # host copy of model.steps_seen: read once, not every step

    def render(self, model: NeRFModel, index: torch.Tensor) -> torch.Tensor:
        """Colours (B, 3) of the rays at ``index``."""
        rendered = render_rays(
            model.field, model.grid, self.origins[index], self.directions[index], self.step, self.background
        )
        return rendered.result.color

    def loss(self, model: NeRFModel, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._seen is None:
            self._seen = int(model.steps_seen)  # after a resume, the restored count
        if self._seen >= self.warmup and self._seen % self.update_every == 0:
            model.grid.update(model.field.density, self.step, generator)
        self._seen += 1
        model.steps_seen += 1
        index = torch.randint(len(self.origins), (self.batch_size,), generator=generator).to(self.origins.device)
        mse = torch.mean((self.render(model, index) - self.colors[index]) ** 2)
        return mse, mse_to_psnr(mse.detach())

    def evaluate(self, model: NeRFModel) -> Evaluation:
        index = torch.arange(len(self.origins), device=self.origins.device)
        colors = torch.cat([self.render(model, chunk) for chunk in index.split(4096)])
        return Evaluation({"psnr": psnr(colors, self.colors)})
