"""Fit an image (or every image of a folder) with ffn, cam or ngp; see README.md."""

from __future__ import annotations

import argparse

from camfields.cli import add_common_arguments, report, train_overrides
from camfields.tasks.image import MODES, PRESETS, fit_images, resolve_config


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--image", help="image file or folder (default: the embedded astronaut photo)")
    parser.add_argument("--model", choices=sorted(PRESETS), help="model preset (default: cam)")
    parser.add_argument("--mode", choices=MODES, help="regression (all pixels) or generalization")
    parser.add_argument("--downscale", type=int, help="area-downscale the image by this integer factor")
    add_common_arguments(parser, "image/natural")
    args = parser.parse_args(argv)
    top = {k: v for k, v in {"mode": args.mode, "downscale": args.downscale}.items() if v is not None}
    cfg = resolve_config(args.model, args.config, {**top, "train": train_overrides(args)})
    result = fit_images(args.image, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    summary = result.get("mean", result)
    report({k: summary[k] for k in ("psnr", "ssim", "lpips") if k in summary})
