"""Helpers shared by the entry points in ``scripts/``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from camfields.errors import CamfieldsError


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments every fit script takes: --out, --device, --resume, --config, --steps, --seed."""
    parser.add_argument("--out", required=True, help="output folder (config, checkpoint, metrics, images)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--resume", action="store_true", help="continue the fit in --out from its checkpoint")
    parser.add_argument("--config", help="TOML config file or preset name under scenes/ (e.g. image/natural)")
    parser.add_argument("--steps", type=int, help="training steps (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def train_overrides(args: argparse.Namespace) -> dict:
    """The ``train`` overrides given on the command line."""
    return {k: v for k, v in {"steps": args.steps, "seed": args.seed}.items() if v is not None}


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run ``main``; a CamfieldsError or Ctrl-C ends in one line on stderr and a non-zero exit."""
    try:
        main(argv)
    except CamfieldsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    return 0
