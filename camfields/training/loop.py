"""The one training loop every task uses.

A task supplies an ``Objective`` (its loss on a batch and its evaluation); the loop
owns the optimizer groups, the schedule, seeding, the progress bar, TensorBoard,
checkpoints and resuming, so a resumed fit ends with exactly the same weights as
an uninterrupted one. Given a ``Shard`` of several processes, it trains through
DistributedDataParallel: each rank computes the loss on its slice of the global batch
and rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from camfields import distributed
from camfields.distributed import Shard
from camfields.errors import CamfieldsError, first_line
from camfields.training.checkpoint import load_checkpoint, save_checkpoint
from camfields.training.config import TrainConfig
from camfields.training.hooks import Hook, read_through, total_penalty
from camfields.training.optim import build_optimizer
from camfields.training.schedules import lr_factor

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class Evaluation:
    """What an objective reports: scalar metrics and (H, W, C) images in [0, 1]."""

    metrics: dict[str, float | None]
    images: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(Protocol):
    """A task's side of the loop."""

    def loss(self, model: nn.Module, generator: torch.Generator, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, batch PSNR in dB) for one step, on ``shard``'s slice of the global batch.

        Draw the global batch from ``generator`` (the same on every rank), then train on
        ``shard.take(batch)`` with the loss ``shard.mean(...)``.
        """

    def evaluate(self, model: nn.Module) -> Evaluation:
        """Metrics (and preview images) of the current model, in eval mode without gradients."""


@dataclass
class FitResult:
    """Summary of a finished fit."""

    steps: int
    seconds: float  # training time, summed over resumed runs
    resumed_from: int | None
    evaluation: Evaluation | None  # None on ranks other than 0


class _ShardLoss(nn.Module):
    """The objective's loss plus the hooks' penalties as a module's forward, so that
    DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, objective: Objective, hooks: Sequence[Hook]):
        super().__init__()
        self.model, self.objective, self.hooks = model, objective, hooks

    def forward(self, generator: torch.Generator, shard: Shard, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss, batch_psnr = read_through(
            self.hooks, step, self.model, lambda model: self.objective.loss(model, generator, shard)
        )
        return total_penalty(self.hooks, step, self.model, loss), batch_psnr


def _loss_function(model: nn.Module, objective: Objective, hooks: Sequence[Hook], shard: Shard) -> nn.Module:
    """The per-step loss, wrapped in DistributedDataParallel on several ranks."""
    step = _ShardLoss(model, objective, hooks)
    if shard.world == 1:
        return step
    # Buffers (occupancy grids) evolve identically on every rank: same
    # weights, same generator; broadcasting them every step would only cost time.
    ddp = nn.parallel.DistributedDataParallel
    if "forward_sync_buffers" in inspect.signature(ddp).parameters:  # torch >= 2.14 renamed it
        return ddp(step, forward_sync_buffers=False)
    return ddp(step, broadcast_buffers=False)


class TrainingStep:
    """One step of the loop: the hooks' ``before_step``, the loss plus penalties (through
    DistributedDataParallel on several ranks), backward, the optimizer's update, the hooks'
    ``after_step``. ``train`` takes its steps with it; a benchmark or a timing probe can too.

    Args:
        model: the field, on its device.
        objective: the task's loss.
        optimizer: updates the model's parameters (its learning rates are the caller's to set).
        hooks: schedules acting on the model (``training.hooks``).
        shard: this process's rank among those fitting the model together (None: alone).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        hooks: Sequence[Hook] = (),
        shard: Shard | None = None,
    ):
        self.model, self.optimizer, self.hooks, self.shard = model, optimizer, hooks, shard or Shard()
        self.loss = _loss_function(model, objective, hooks, self.shard)

    def __call__(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Take step ``step`` (0-based) with batches from ``generator``; returns (loss, batch PSNR)."""
        for hook in self.hooks:
            hook.before_step(step, self.model, generator)
        loss, batch_psnr = self.loss(generator, self.shard, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for hook in self.hooks:
            hook.after_step(step + 1, self.model)
        return loss, batch_psnr


def _evaluate(model: nn.Module, objective: Objective) -> Evaluation:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        result = objective.evaluate(model)
    model.train(was_training)
    return result


#: What a checkpoint holds, and the types ``restore_checkpoint`` accepts for each entry.
CHECKPOINT_ENTRIES = {"step": int, "seconds": (int, float), "model": dict, "optimizer": dict, "generator": torch.Tensor}


def _without_step_counters(weights: dict, model: nn.Module) -> dict:
    """``weights`` less the ``steps_seen`` counters that models kept before the loop passed the
    step to hooks (checkpoints of earlier versions hold them; the step entry replaces them)."""
    own = model.state_dict()
    return {k: v for k, v in weights.items() if k in own or k.rpartition(".")[2] != "steps_seen"}


def restore_checkpoint(
    state: dict,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    steps: int | None = None,
) -> None:
    """Load ``state`` (read from ``path``) into the model, optimizer and batch generator, or say in
    one sentence what about the file does not fit: a missing or mistyped entry, a negative step or
    time, a step past the fit's ``steps``, NaN or infinite weights, tensors of another model,
    another optimizer's state, a damaged generator state."""
    if not isinstance(state, dict):
        raise CamfieldsError(f"checkpoint {path} is not a camfields checkpoint (it holds a {type(state).__name__})")
    for key, kind in CHECKPOINT_ENTRIES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CamfieldsError(f"checkpoint {path} lacks a valid '{key}' entry; delete it to restart that fit")
    if state["step"] < 0 or not state["seconds"] >= 0:
        raise CamfieldsError(
            f"checkpoint {path} records step {state['step']} after {state['seconds']} s; neither may be negative"
        )
    if steps is not None and state["step"] > steps:
        raise CamfieldsError(f"checkpoint {path} records step {state['step']:,}, past the fit's {steps:,} steps")
    weights = state["model"].items()
    broken = [k for k, v in weights if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CamfieldsError(
            f"checkpoint {path} holds NaN or infinite weights ({broken[0]}); the fit had diverged, "
            "so restart it (another --out) with a lower train.lr"
        )
    try:
        model.load_state_dict(_without_step_counters(state["model"], model))
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CamfieldsError(f"checkpoint {path} does not fit this fit's model: {first_line(e)}") from None


def train(
    model: nn.Module,
    objective: Objective,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    description: str = "fit",
    hooks: Sequence[Hook] = (),
    shard: Shard | None = None,
) -> FitResult:
    """Fit ``model`` to ``objective`` for ``cfg.steps`` steps.

    Args:
        model: the field, already on its device.
        objective: the task's loss and evaluation.
        cfg: training settings.
        out_dir: where the checkpoint (``checkpoint.pt``) and TensorBoard logs (``tb/``) go.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        progress: show a tqdm bar with the loss and PSNR.
        tensorboard: write TensorBoard scalars and images.
        description: label of the progress bar.
        hooks: schedules acting on the model (``training.hooks``), called every step in order.
        shard: this process's rank among the processes that fit ``model`` together
            (``distributed.current()``); None fits it in this process alone.
    Returns:
        A ``FitResult`` with the final evaluation (None on ranks other than 0).
    """
    cfg.validate()
    shard = shard or Shard()
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    optimizer = build_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    start, seconds_before, resumed_from = 0, 0.0, None
    state = load_checkpoint(ckpt_path) if shard.main and resume and ckpt_path.exists() else None
    if shard.world > 1:  # rank 0 reads the checkpoint; the others need no shared folder
        state = distributed.broadcast(state)
    if state is not None:
        restore_checkpoint(state, ckpt_path, model, optimizer, generator, cfg.steps)
        start, seconds_before, resumed_from = state["step"], state["seconds"], state["step"]
        if progress and shard.main:
            tqdm.write(f"resuming {out_dir} from step {start} of {cfg.steps}")
    take_step = TrainingStep(model, objective, optimizer, hooks, shard)

    writer = None
    if tensorboard and shard.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=start)

    def checkpoint(step: int, seconds: float) -> None:
        if not shard.main:
            return
        state = {
            "step": step,
            "seconds": seconds,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
        }
        save_checkpoint(ckpt_path, state)

    def log_evaluation(step: int) -> Evaluation:
        evaluation = _evaluate(model, objective)
        if writer is not None:
            for name, value in evaluation.metrics.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"eval/{name}", value, step)
            for name, image in evaluation.images.items():
                writer.add_image(f"eval/{name}", image.clamp(0, 1).cpu(), step, dataformats="HWC")
        return evaluation

    model.train()
    bar = tqdm(
        total=cfg.steps, initial=start, desc=description, disable=not (progress and shard.main), dynamic_ncols=True
    )
    t0 = time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            factor = lr_factor(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            loss, batch_psnr = take_step(step, generator)
            done = step + 1
            bar.update(1)
            if done % cfg.log_every == 0 or done % cfg.checkpoint_every == 0 or done == cfg.steps:
                loss_value, psnr_value = loss.item(), batch_psnr.item()
                if not math.isfinite(loss_value):  # before a checkpoint could keep the diverged weights
                    raise CamfieldsError(
                        f"the fit diverged: its loss is {loss_value} at step {done}; lower train.lr "
                        f"(now {cfg.lr:g}) and start again (another --out, or --resume from the last checkpoint)"
                    )
                bar.set_postfix(loss=f"{loss_value:.3g}", psnr=f"{psnr_value:.2f}")
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, done)
                    writer.add_scalar("train/psnr", psnr_value, done)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], done)
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps and shard.main:
                log_evaluation(done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                checkpoint(done, seconds_before + time.perf_counter() - t0)
        seconds = seconds_before + time.perf_counter() - t0
        differing = distributed.differing_states(model) if shard.world > 1 else []
        if differing and shard.main:
            warnings.warn(f"the ranks' copies of the model drifted apart in {', '.join(differing[:5])}", stacklevel=2)
        evaluation = log_evaluation(cfg.steps) if shard.main else None
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return FitResult(steps=cfg.steps, seconds=seconds, resumed_from=resumed_from, evaluation=evaluation)
