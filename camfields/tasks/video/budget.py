"""Fits in a time budget: time a few training steps of each planned video fit on its device,
then give every fit the same number of epochs, the most that lets them all end in time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from camfields.compression.qat import QuantizationSchedule
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.tasks.video.config import VideoConfig
from camfields.tasks.video.fit import VIDEO, Clip, quality
from camfields.training.loop import TrainingStep
from camfields.training.optim import build_optimizer

#: full-clip renders after training, with room to spare: the final evaluation through the
#: quantized weights, the float render, the head's features, the decoder (see ``fit_video``)
RENDERS_AFTER_FIT = 6
#: frames the quality metrics are timed on (scaled to the clip)
QUALITY_FRAMES = 8


@dataclass(frozen=True)
class FitCost:
    """What one fit costs in seconds on its device: per epoch, and once (after training, plus
    loading the clip)."""

    epoch_seconds: float
    fixed_seconds: float


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_fit(
    video: torch.Tensor, cfg: VideoConfig, device: torch.device, steps: int = 3, load_seconds: float = 0.0
) -> FitCost:
    """Time ``steps`` float and ``steps`` quantization-aware training steps of the fit ``cfg``
    describes on ``video`` (T, H, W, 3) in [0, 1], each after one untimed step (allocation,
    kernel selection), one render of the clip and the quality metrics on a few frames. The
    epoch cost weighs the two kinds of step by ``qat_fraction``; the fixed cost is
    ``RENDERS_AFTER_FIT`` renders, the metrics over the clip and ``load_seconds``. Nothing is
    written; the fit's own model is built (seeded as the fit will be) and thrown away."""
    frames = len(video)
    clip, shard = Clip(Path("probe"), video), Shard()
    cfg = VIDEO.plan(cfg, clip, shard)
    torch.manual_seed(cfg.train.seed)
    setup = VIDEO.build(cfg, clip, device)
    model, objective, hooks = setup.model, setup.objective, setup.hooks
    for hook in hooks:  # the untimed step and `steps` float steps, then QAT
        if isinstance(hook, QuantizationSchedule):
            hook.start = steps + 1
    take_step = TrainingStep(model, objective, build_optimizer(model, cfg.train), hooks, shard)
    rng, step = torch.Generator().manual_seed(cfg.train.seed), 0

    def seconds_per_step(count: int) -> float:
        nonlocal step
        _synchronize(device)
        t0 = time.perf_counter()
        for _ in range(count):
            take_step(step, rng)
            step += 1
        _synchronize(device)
        return (time.perf_counter() - t0) / count

    seconds_per_step(1)
    float_step = seconds_per_step(steps)
    seconds_per_step(1)
    qat_step = seconds_per_step(steps)
    steps_per_epoch = math.ceil(frames / cfg.batch_frames)
    qat = cfg.compression.qat_fraction
    epoch = steps_per_epoch * ((1 - qat) * float_step + qat * qat_step)

    t0 = time.perf_counter()
    rendered = objective.render(model, quantized=True)
    _synchronize(device)
    render = time.perf_counter() - t0
    sample = min(frames, QUALITY_FRAMES)
    t0 = time.perf_counter()
    quality(rendered[:sample].permute(0, 2, 3, 1), objective.video[:sample].permute(0, 2, 3, 1))
    metrics = (time.perf_counter() - t0) * frames / sample
    return FitCost(epoch, RENDERS_AFTER_FIT * render + metrics + load_seconds)


def plan_epochs(costs: list[FitCost], seconds: float, margin: float = 0.9) -> int:
    """The most epochs every fit can have (the same for all) so that, run one after another, they
    end within ``margin`` x ``seconds``; an error when not even one epoch fits."""
    if not costs:
        raise CamfieldsError("no fits to plan a time budget for")
    fixed = sum(c.fixed_seconds for c in costs)
    per_epoch = sum(c.epoch_seconds for c in costs)
    epochs = math.floor((margin * seconds - fixed) / per_epoch)
    if epochs < 1:
        needed = (fixed + per_epoch) / margin
        raise CamfieldsError(
            f"a time budget of {seconds:.0f} s is too short for these {len(costs)} fits: one epoch each "
            f"needs about {needed:.0f} s (measured on this device, with a {1 - margin:.0%} margin)"
        )
    return epochs
