"""Objectives shared by tasks that regress a field onto sampled values."""

from __future__ import annotations

import torch
from torch import nn

from camfields.distributed import Shard
from camfields.metrics import mse_to_psnr, psnr
from camfields.ops.sync import to_device
from camfields.training.loop import Evaluation


def predict(model: nn.Module, coords: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """``model(coords)`` evaluated in chunks of ``chunk`` points, concatenated: (N, out_dim)."""
    return torch.cat([model(coords[i : i + chunk]) for i in range(0, coords.shape[0], chunk)])


class CoordinateRegression:
    """Mean squared error between ``model(coords)`` and ``targets``.

    Args:
        coords: (N, in_dim) inputs, on the model's device.
        targets: (N, out_dim) values in [0, 1] (PSNR assumes that range).
        batch_size: points per step, drawn uniformly with replacement; 0 = all points.
    """

    def __init__(self, coords: torch.Tensor, targets: torch.Tensor, batch_size: int = 0):
        self.coords, self.targets, self.batch_size = coords, targets, batch_size

    def loss(self, model: nn.Module, generator: torch.Generator, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
        count = self.coords.shape[0]
        if 0 < self.batch_size < count:
            batch = torch.randint(count, (self.batch_size,), generator=generator)
            local = to_device(shard.take(batch), self.coords.device)
            rows = self.batch_size
        else:  # full batch: this rank's contiguous rows, without copying them
            local, rows = shard.rows(count), count
        mse = shard.mean((model(self.coords[local]) - self.targets[local]) ** 2, rows)
        return mse, mse_to_psnr(mse.detach())

    def evaluate(self, model: nn.Module) -> Evaluation:
        return Evaluation({"psnr": psnr(predict(model, self.coords), self.targets)})
