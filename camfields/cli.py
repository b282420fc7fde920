"""Helpers shared by the entry points in ``scripts/``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

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


def scene_fit_main(
    argv: list[str] | None,
    description: str,
    presets: dict,
    default_model: str,
    data_help: str,
    resolve: Callable[..., Any],
    fit: Callable[..., dict[str, Any]],
) -> None:
    """The command line of fit_nerf.py and fit_dynamic.py: parse, resolve the config, fit, print metrics."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--model", choices=sorted(presets), help=f"model preset (default: {default_model})")
    parser.add_argument("--downscale", type=int, help="area-downscale the images by this integer factor")
    parser.add_argument("--eval-split", choices=("val", "test"), help="split to evaluate on (default: val)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    top = {"downscale": args.downscale, "eval_split": args.eval_split}
    overrides = {k: v for k, v in top.items() if v is not None}
    cfg = resolve(args.model, args.config, {**overrides, "train": train_overrides(args)})
    metrics = fit(args.data, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    keys = ("psnr", "ssim", "lpips", "size_mb", "seconds")
    print(json.dumps({k: metrics[k] for k in keys} | {k: v for k, v in metrics.items() if k.endswith("bit")}))
