"""Run folders: who is writing one, what it fitted, and how a fit continues or extends in it.

A fit takes ``lock_run_dir`` (an exclusive ``flock`` on ``<out>/.lock``, released by the OS when
the process dies) before it writes anything, so a second fit into the same folder is refused
at once. ``prepare_run_dir`` then records the resolved config, the task and the fitted data's
identity in ``config.json``, or, when resuming, checks them against the recorded ones.

Extending a fit: ``--resume`` with a larger ``train.steps`` (for video, ``epochs``) continues
from the checkpoint. The learning-rate schedule keeps the span it was planned with
(``train.schedule_steps``, by default the first fit's steps): the added steps run at the
schedule's final rate, and the steps already done are exactly those of the recorded plan.
A smaller ``train.steps`` than recorded is refused; so is any other changed setting.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from camfields.config import config_differences, to_dict, upgraded
from camfields.errors import CamfieldsError
from camfields.io.identity import describe
from camfields.training.checkpoint import read_json, write_json

CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
#: config.json entries that are not settings: the task's name and the data it fitted
TASK_KEY, DATA_KEY = "task", "fitted_data"
#: what a finished or checkpointed fit leaves; a folder holding neither holds nothing to lose
RESULT_NAMES = ("checkpoint.pt", "metrics.json")
#: settings that only lengthen a fit (what derives from them follows)
LENGTHENING = ("train.steps",)


def with_missing_keys(recorded: Any, defaults: Any) -> Any:
    """``recorded`` with every key it lacks and ``defaults`` has added at its default value (nested dicts)."""
    if not isinstance(recorded, dict) or not isinstance(defaults, dict):
        return recorded
    return {**defaults, **{k: with_missing_keys(v, defaults.get(k)) for k, v in recorded.items()}}


def _recorded_holder(fd: int) -> str:
    """The process id the holder of a lock file wrote into it."""
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"


def lock_holder(out_dir: Path) -> str | None:
    """The process id of the fit holding ``out_dir`` (``lock_run_dir``), or None when none does.

    Tests the lock with a shared one taken and dropped at once; a fit starting in that instant
    would be refused as if another fit held the folder."""
    try:
        fd = os.open(Path(out_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return _recorded_holder(fd)
    finally:
        os.close(fd)


@contextmanager
def lock_run_dir(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir`` (created if missing) for this process, or refuse in one sentence when another
    fit holds it. Leftover temporary files of a killed writer are removed once the lock is held."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CamfieldsError(f"output path {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _recorded_holder(fd)
            raise CamfieldsError(
                f"{out_dir} is being written by another fit (process {holder}); "
                "wait for it to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        for stale in out_dir.glob(".*.tmp"):  # atomic_write's temporaries; no writer is active now
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def holds_results(out_dir: Path) -> bool:
    """Whether ``out_dir`` (or a folder under it) holds a checkpoint or metrics: something a new fit would lose."""
    return any(next(Path(out_dir).rglob(name), None) is not None for name in RESULT_NAMES)


def _refuse_other_data(out_dir: Path, recorded: dict[str, Any] | None, data: dict[str, Any] | None) -> None:
    if recorded and data and recorded.get("sha256") != data.get("sha256"):
        raise CamfieldsError(
            f"cannot resume {out_dir}: it was fitted on {describe(recorded)}, not on {describe(data)}; "
            "resume with the same data or choose another --out"
        )


def _extended(cfg: Any, recorded: dict[str, Any], out_dir: Path, lengthening: Sequence[str]) -> Any:
    """``cfg`` (more steps than ``recorded``) with the recorded schedule span pinned."""
    old, new = recorded["train"]["steps"], cfg.train.steps
    if new < old:
        setting = lengthening[0].rpartition(".")[2]  # what the user sets: steps, or a video's epochs
        given, planned = (new, old) if setting == "steps" else (getattr(cfg, setting), recorded[setting])
        raise CamfieldsError(
            f"cannot resume {out_dir} with {given} {setting}: it was planned for {planned}; "
            f"--resume can extend a fit (more {setting}) but not shorten it"
        )
    span = cfg.train.schedule_steps or recorded["train"].get("schedule_steps") or old
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, schedule_steps=span))


def prepare_run_dir(
    out_dir: Path,
    cfg: Any,
    resume: bool,
    task: str | None = None,
    data: dict[str, Any] | None = None,
    lengthening: Sequence[str] = LENGTHENING,
) -> Any:
    """Record the dataclass config ``cfg``, ``task`` and the ``data`` identity in ``out_dir``, refusing
    to clobber another fit; returns the config to run (``cfg``, or ``cfg`` extended).

    Without ``resume`` a folder that holds a fit (a checkpoint or metrics) is an error and nothing
    in it is touched; a folder with only a config (a fit that failed before its first checkpoint)
    is reused. With ``resume`` the recorded data must be the same and the recorded config equal to
    ``cfg`` but for the ``lengthening`` settings (see the module's note on extending). A setting
    the recorded config lacks (added to camfields after that fit) counts as its default.
    """
    out_dir = Path(out_dir)
    config = json.loads(json.dumps(to_dict(cfg)))  # tuples become lists, as read back from JSON
    config_path = out_dir / CONFIG_NAME
    if holds_results(out_dir):
        if not resume:
            raise CamfieldsError(f"{out_dir} already holds a fit; pass --resume to continue it or choose another --out")
        if not config_path.exists():
            raise CamfieldsError(
                f"cannot resume {out_dir}: it holds a fit but no {CONFIG_NAME}, so what it fitted cannot be "
                "checked; choose another --out"
            )
        recorded = read_json(config_path)
        _refuse_other_data(out_dir, recorded.pop(DATA_KEY, None), data)
        recorded.pop(TASK_KEY, None)
        recorded = with_missing_keys(upgraded(recorded, type(cfg)), json.loads(json.dumps(to_dict(type(cfg)()))))
        differences = config_differences(recorded, config)
        if "train.schedule_steps" in differences and cfg.train.schedule_steps == 0:
            differences.remove("train.schedule_steps")  # unset: the recorded span holds
        others = [d for d in differences if d not in lengthening]
        if others:
            raise CamfieldsError(
                f"cannot resume {out_dir}: it was fitted with a different config ({', '.join(others)} differ"
                f"{'' if len(others) > 1 else 's'}); rerun with the same settings (only {', '.join(lengthening)} "
                "may grow, to extend the fit) or choose another --out"
            )
        if not differences:
            return cfg
        cfg = _extended(cfg, recorded, out_dir, lengthening)
        config = json.loads(json.dumps(to_dict(cfg)))
    write_json(config_path, {TASK_KEY: task, **config, DATA_KEY: data} if task or data else config)
    return cfg


@contextmanager
def removed_on_failure(out_dir: Path, created: bool) -> Iterator[None]:
    """On an error inside, remove what a fit wrote to ``out_dir`` when it holds nothing to lose (no
    checkpoint, no metrics): the folder itself when this fit ``created`` it, else its config and
    logs. Enter it only while holding the folder's lock, so that it never touches another fit's files."""
    out_dir = Path(out_dir)
    try:
        yield
    except BaseException:
        if out_dir.is_dir() and not holds_results(out_dir):
            if created:
                shutil.rmtree(out_dir, ignore_errors=True)
            else:
                (out_dir / CONFIG_NAME).unlink(missing_ok=True)
                shutil.rmtree(out_dir / "tb", ignore_errors=True)
        raise
