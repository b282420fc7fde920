#!/usr/bin/env python
"""Fit a dynamic scene (D-NeRF folder or packed .npz) with T-NeRF, T-NeRF + CAM or a space-time model; see README.md."""

from __future__ import annotations

import argparse
import json
import sys

from camfields.cli import add_common_arguments, run, train_overrides
from camfields.tasks.dynamic import MODEL_PRESETS, fit_dynamic, resolve_config
from camfields.tasks.radiance import SPLITS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="D-NeRF scene folder (frames with 'time') or .npz with images/poses/times/focal")
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), help="model preset (default: tnerf_cam)")
    parser.add_argument("--downscale", type=int, help="area-downscale the images by this integer factor")
    parser.add_argument("--eval-split", choices=SPLITS, help="split to evaluate on (default: val)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    top = {"downscale": args.downscale, "eval_split": args.eval_split}
    overrides = {k: v for k, v in top.items() if v is not None}
    cfg = resolve_config(args.model, args.config, {**overrides, "train": train_overrides(args)})
    metrics = fit_dynamic(args.data, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    keys = ("psnr", "ssim", "lpips", "size_mb", "seconds")
    print(json.dumps({k: metrics[k] for k in keys} | {k: v for k, v in metrics.items() if k.endswith("bit")}))


if __name__ == "__main__":
    sys.exit(run(main))
