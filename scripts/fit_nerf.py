#!/usr/bin/env python
"""Fit a Blender scene with a NeRF model (vanilla, CAM variants, Instant-NGP style); see README.md."""

from __future__ import annotations

import argparse
import json
import sys

from camfields.cli import add_common_arguments, run, train_overrides
from camfields.tasks.nerf import MODEL_PRESETS, SPLITS, fit_nerf, resolve_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="Blender scene folder with transforms_{train,val,test}.json")
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), help="model preset (default: ngp)")
    parser.add_argument("--downscale", type=int, help="area-downscale the images by this integer factor")
    parser.add_argument("--eval-split", choices=SPLITS, help="split to evaluate on (default: val)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    top = {"downscale": args.downscale, "eval_split": args.eval_split}
    overrides = {k: v for k, v in top.items() if v is not None}
    cfg = resolve_config(args.model, args.config, {**overrides, "train": train_overrides(args)})
    metrics = fit_nerf(args.data, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    keys = ("psnr", "ssim", "lpips", "size_mb", "seconds")
    print(json.dumps({k: metrics[k] for k in keys} | {k: v for k, v in metrics.items() if k.endswith("bit")}))


if __name__ == "__main__":
    sys.exit(run(main))
