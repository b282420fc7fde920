"""Helpers shared by the command-line entry points (``camfields.commands``, ``scripts/``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Collection
from typing import Any

import torch.distributed as dist

from camfields import distributed
from camfields.config import check_choice
from camfields.errors import CamfieldsError, first_line

#: set (to 1) by ``camfields --debug``: tracebacks behind one-line errors, and value checks on GPU tensors
DEBUG_ENV = "CAMFIELDS_DEBUG"


class Terminated(Exception):
    """SIGTERM arrived: torchrun stops the other ranks this way when one of them fails."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def add_common_arguments(parser: argparse.ArgumentParser, config_example: str, steps: bool = True) -> None:
    """Arguments every fit command takes: --out, --device, --resume, --config (help naming the
    preset ``config_example``), --steps (unless ``steps`` is False), --seed, --quiet."""
    parser.add_argument("--out", required=True, help="output folder (config, checkpoint, metrics, images)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the fit in --out from its checkpoint; with a larger {'--steps' if steps else '--epochs'} "
        "it extends the fit, the added steps at the final learning rate of its schedule",
    )
    parser.add_argument(
        "--config", help=f"TOML config file or preset name (e.g. {config_example}; camfields presets lists them)"
    )
    if steps:
        parser.add_argument("--steps", type=int, help="training steps (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def train_overrides(args: argparse.Namespace) -> dict:
    """The ``train`` overrides given on the command line."""
    given = {"steps": getattr(args, "steps", None), "seed": args.seed}
    return {k: v for k, v in given.items() if v is not None}


def comma_ints(text: str) -> list[int]:
    """The comma-separated integers of a command-line value, e.g. ``"25000,50000"``."""
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise CamfieldsError(f"expected comma-separated integers, got {text!r}") from None


def comma_floats(text: str, option: str) -> list[float]:
    """The comma-separated numbers (finite, >= 0) of a command-line value, e.g. ``"0.003,0.01"``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CamfieldsError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise CamfieldsError(f"{option} takes comma-separated numbers >= 0, got {text!r}")
    return values


def comma_names(text: str, known: Collection[str], option: str) -> list[str]:
    """The comma-separated names of a command-line value, each checked against ``known``."""
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    for name in chosen:
        check_choice(name, known, f"{option} name")
    return chosen


def report(summary: dict[str, Any]) -> None:
    """Print a fit's one-line JSON summary (once: on rank 0 under torchrun)."""
    if distributed.current().main:
        print(json.dumps(summary))


def debugging() -> bool:
    """Whether ``camfields --debug`` (or ``CAMFIELDS_DEBUG=1``) asked for tracebacks behind the one-line errors."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run ``main``; errors, Ctrl-C and a failed peer rank end in one line on stderr and a non-zero exit.

    Under torchrun the process ends here, after leaving the process group, without the
    interpreter's finalization: there gloo's leftover worker objects can abort a rank that
    finished its work ("terminate called without an active exception", SIGABRT), which the
    launcher reports as a failed job. Every file a fit writes is closed before this point.
    """
    code = _run_reporting_errors(main, argv)
    if distributed.launched():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_reporting_errors(main: Callable[[list[str] | None], object], argv: list[str] | None) -> int:
    label = f"rank {distributed.current_rank_from_env()}: " if distributed.launched() else ""
    if distributed.launched():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        main(argv)
    except CamfieldsError as e:
        if debugging():
            traceback.print_exc()
        print(f"{label}error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output left (``camfields info --json | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except Terminated:
        print(
            f"{label}stopped: the launcher ended this process (another rank failed, or the job was cancelled); "
            "continue with the same command and --resume",
            file=sys.stderr,
        )
        return 143
    except RuntimeError as e:  # gloo reports a dead peer as a plain RuntimeError
        if not (distributed.launched() and (isinstance(e, dist.DistError) or distributed.peer_failure(e))):
            raise
        print(
            f"{label}error: lost contact with another rank ({first_line(e)}); the job stops, "
            "continue it with the same command and --resume",
            file=sys.stderr,
        )
        return 3
    finally:
        if distributed.launched():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        distributed.shutdown()
    return 0


def scene_fit_main(
    argv: list[str] | None,
    prog: str | None,
    description: str,
    presets: dict,
    default_model: str,
    data_help: str,
    config_example: str,
    resolve: Callable[..., Any],
    fit: Callable[..., dict[str, Any]],
) -> None:
    """The command line of ``camfields fit nerf`` and ``fit dynamic``: parse, resolve the config, fit, print metrics."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--model", choices=sorted(presets), help=f"model preset (default: {default_model})")
    parser.add_argument("--downscale", type=int, help="area-downscale the images by this integer factor")
    parser.add_argument("--eval-split", choices=("val", "test"), help="split to evaluate on (default: val)")
    add_common_arguments(parser, config_example)
    args = parser.parse_args(argv)
    top = {"downscale": args.downscale, "eval_split": args.eval_split}
    overrides = {k: v for k, v in top.items() if v is not None}
    cfg = resolve(args.model, args.config, {**overrides, "train": train_overrides(args)})
    metrics = fit(args.data, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    keys = ("psnr", "ssim", "lpips", "size_mb", "seconds")
    report({k: metrics[k] for k in keys} | {k: v for k, v in metrics.items() if k.endswith("bit")})
