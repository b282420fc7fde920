"""The task protocol: what a signal type supplies, and the one fit every task runs.

A task (``tasks.image``, ``tasks.nerf``, ``tasks.dynamic``, ``tasks.video``) names its config
class and its model presets (a ``config.Presets`` registry), and says how to load its data, how to
build the model, objective and training hooks (``Task.build``), how to evaluate the fitted
field and write its outputs (``Task.evaluate``), and how to export it to a file
(``Task.export``; issue 29 gives every task a file format). ``run_fit`` owns the rest:
seeding, the run folder, resuming, ``train``, the metrics record and its JSON, and handing
the result to every rank.

Example (a task's fit, as ``tasks.image.fit_images`` runs it)::

    >>> import tempfile
    >>> from camfields.tasks import image
    >>> cfg = image.IMAGE.resolve_config("cam", overrides={"downscale": 32, "train": {"steps": 2}})
    >>> metrics = fit(image.IMAGE, None, cfg, tempfile.mkdtemp() + "/run", "cpu", progress=False)
    >>> metrics["steps"], metrics["ranks"], metrics["width"]
    (2, 1, 16)
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from camfields import distributed
from camfields.config import Presets
from camfields.distributed import Shard
from camfields.errors import CamfieldsError, first_line
from camfields.io.identity import data_identity
from camfields.runtime import device_name
from camfields.training.checkpoint import write_json
from camfields.training.hooks import Hook
from camfields.training.loop import FitResult, Objective, train
from camfields.training.run_dir import LENGTHENING, lock_run_dir, prepare_run_dir, removed_on_failure

C = TypeVar("C")  # a task's config dataclass
D = TypeVar("D")  # a task's loaded data

METRICS_NAME = "metrics.json"


@dataclass
class Setup:
    """What ``Task.build`` hands the shared fit: the model (on its device), the objective, the
    training hooks, a label for progress bars and what evaluation needs besides."""

    model: nn.Module
    objective: Objective
    label: str
    hooks: list[Hook] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


class Task(abc.ABC, Generic[C, D]):
    """A signal type's side of a fit; ``run_fit`` calls its methods in the order listed here."""

    #: the task's name in the ``camfields fit`` command and in run folders
    name: str
    #: the task's presets (their config class is the task's config class)
    presets: Presets
    #: settings that only lengthen a fit: ``--resume`` may raise them to extend it (``training.run_dir``)
    lengthening: tuple[str, ...] = LENGTHENING

    def resolve_config(
        self, model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
    ) -> C:
        """The task's config from a preset, a config file and overrides (see ``Presets.resolve``)."""
        return self.presets.resolve(model, config, overrides)

    @abc.abstractmethod
    def load(self, cfg: C, source: Path | None) -> D:
        """The data to fit, from ``source`` (None: the task's default, if it has one)."""

    def identity(self, cfg: C, source: Path | None) -> dict[str, Any] | None:
        """What the run folder records of the data (path, size, content hash; ``io.identity``); None
        for built-in data."""
        return None if source is None else data_identity(source)

    def plan(self, cfg: C, data: D, shard: Shard) -> C:
        """The config the fit records and runs, settled from the data (e.g. sizes, step counts);
        called before the seed is set. By default ``cfg`` itself."""
        return cfg

    @abc.abstractmethod
    def build(self, cfg: C, data: D, device: torch.device) -> Setup:
        """The model (built right after the seed is set), objective and hooks of a fit."""

    @abc.abstractmethod
    def evaluate(
        self, cfg: C, data: D, setup: Setup, result: FitResult, out_dir: Path, shard: Shard, progress: bool
    ) -> dict[str, Any] | None:
        """Evaluate the fitted model and write the task's outputs to ``out_dir``; runs on every rank of
        ``shard`` and returns the task's metrics on rank 0 (None elsewhere)."""

    def export(self, cfg: C, setup: Setup, path: Path) -> int:
        """Write the fitted field to the file ``path``; returns its size in bytes."""
        raise CamfieldsError(f"{self.name} fields cannot be written to a compressed file yet (issue 29)")


def _on_main(shard: Shard, work: Callable[[], Any]) -> Any:
    """``work()`` on rank 0 of ``shard`` with its result (or error) on every rank."""
    return work() if shard.world == 1 else distributed.run_on_main(work)


def run_fit(
    task: Task[C, D],
    cfg: C,
    data: D,
    out_dir: Path,
    device: torch.device,
    *,
    resume: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
    identity: dict[str, Any] | None = None,
    extend: bool = True,
) -> dict[str, Any]:
    """Fit ``data`` with ``task`` and ``cfg`` into ``out_dir``; returns the metrics on every rank.

    Plans the config; locks ``out_dir``; records the config, the task and the data's ``identity``
    there (or, with ``resume``, checks them against the recorded ones, extending the fit when
    only its length grew: ``training.run_dir``); seeds torch with ``cfg.train.seed``; builds the
    model; trains (resuming from ``out_dir/checkpoint.pt`` with ``resume``); evaluates; and writes
    ``metrics.json``: the task's metrics, then steps, training seconds, ranks, the step resumed
    from and the device. A fit that fails before its first checkpoint leaves no folder behind.

    ``shard`` is this process's part of a fit that several ranks run together
    (``distributed.current()``); None fits in this process alone, even under torchrun.
    """
    shard = shard or Shard()
    out_dir = Path(out_dir)
    cfg = task.plan(cfg, data, shard)
    with held_run_dir(out_dir, shard):
        lengthening = task.lengthening if extend else ()
        cfg = _on_main(shard, lambda: prepare_run_dir(out_dir, cfg, resume, task.name, identity, lengthening))
        return _fit_held(task, cfg, data, out_dir, device, resume, progress, shard)


@contextmanager
def held_run_dir(out_dir: Path, shard: Shard) -> Iterator[None]:
    """Rank 0 of ``shard`` locks ``out_dir`` for the block (``run_dir.lock_run_dir``; a refusal is raised
    on every rank) and, on an error inside, removes what the fit wrote there if it holds nothing to
    lose (while still holding the lock)."""
    with ExitStack() as held:

        def hold() -> None:
            created = not out_dir.exists()
            held.enter_context(lock_run_dir(out_dir))  # a refused fit touches nothing of the holder's
            held.enter_context(removed_on_failure(out_dir, created))

        _on_main(shard, hold)
        yield


def _fit_held(
    task: Task[C, D],
    cfg: C,
    data: D,
    out_dir: Path,
    device: torch.device,
    resume: bool,
    progress: bool,
    shard: Shard,
) -> dict[str, Any]:
    """``run_fit``'s work once the run folder is held and its config settled."""
    torch.manual_seed(cfg.train.seed)
    try:
        setup = task.build(cfg, data, device)
    except RuntimeError as e:  # torch.OutOfMemoryError, or the CPU allocator's refusal
        if not (isinstance(e, torch.OutOfMemoryError) or "allocate" in str(e)):
            raise
        raise CamfieldsError(f"the model of this config does not fit in memory ({first_line(e)})") from None
    result = train(
        setup.model,
        setup.objective,
        cfg.train,
        out_dir,
        resume=resume,
        progress=progress,
        description=setup.label,
        hooks=setup.hooks,
        shard=shard,
    )
    metrics = task.evaluate(cfg, data, setup, result, out_dir, shard, progress)
    if shard.main:
        metrics = {
            **metrics,
            "steps": result.steps,
            "seconds": round(result.seconds, 3),
            "ranks": shard.world,
            "resumed_from": result.resumed_from,
            "device": device_name(device),
        }
        write_json(out_dir / METRICS_NAME, metrics)
    return metrics if shard.world == 1 else distributed.broadcast(metrics)


def fit(
    task: Task[C, D],
    source: Path | None,
    cfg: C,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    extend: bool = True,
) -> dict[str, Any]:
    """Check ``cfg``, join the ranks (when launched by torchrun), pick the device, load ``source``
    and ``run_fit`` with every rank fitting together (``extend``: see ``run_fit``)."""
    cfg.validate()
    torch_device = distributed.init(device)
    source = Path(source) if source is not None else None
    data = task.load(cfg, source)
    identity = task.identity(cfg, source)
    shard = distributed.current()
    options = {"resume": resume, "progress": progress, "shard": shard, "identity": identity, "extend": extend}
    return run_fit(task, cfg, data, out_dir, torch_device, **options)
