#!/usr/bin/env python
"""Image benchmark: ffn, cam and ngp side by side on every image of a folder, both modes.

Every model sees the same images, resolution, steps, batch size and seed. Prints a table
(per image and mean PSNR / SSIM, parameters, seconds) and writes JSON with the device name.
Interrupted runs continue where they stopped when the same --workdir is given again.

    python benchmarks/bench_image.py     # writes benchmarks/results/image/kodak/cpu.json (CPU) or <gpu>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from results_layout import default_out, device_tag

from camfields.cli import run
from camfields.errors import CamfieldsError
from camfields.io.images import list_images
from camfields.runtime import device_name, resolve_device
from camfields.tasks.image import MODES, PRESETS, fit_image_files, resolve_config
from camfields.training.checkpoint import write_json

DEFAULT_IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "images" / "kodak"


def fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(results: dict, models: list[str], modes: list[str]) -> None:
    for mode in modes:
        by_model = results[mode]
        names = list(next(iter(by_model.values()))["images"])
        print(f"\n{mode}: PSNR dB / SSIM per image")
        print(f"{'image':<10}" + "".join(f"{m:>16}" for m in models))
        for name in names:
            cells = [by_model[m]["images"][name] for m in models]
            print(f"{name:<10}" + "".join(f"{fmt(c['psnr']):>8} /{fmt(c['ssim'], 3):>6}" for c in cells))
        means = [by_model[m]["mean"] for m in models]
        print(f"{'mean':<10}" + "".join(f"{fmt(c['psnr']):>8} /{fmt(c['ssim'], 3):>6}" for c in means))
        if mode == "generalization":
            print(f"{'held-out':<10}" + "".join(f"{fmt(c.get('psnr_heldout')):>16}" for c in means))
        print(f"{'params':<10}" + "".join(f"{int(c['params']):>16,}" for c in means))
        print(f"{'s / image':<10}" + "".join(f"{fmt(c['seconds'], 1):>16}" for c in means))


def deltas(results: dict, models: list[str], modes: list[str]) -> dict:
    """Mean PSNR of each model minus ffn's, per mode."""
    if "ffn" not in models:
        return {}
    return {
        mode: {m: results[mode][m]["mean"]["psnr"] - results[mode]["ffn"]["mean"]["psnr"] for m in models if m != "ffn"}
        for mode in modes
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of images (default: shared Kodak)")
    parser.add_argument("--config", default="image/kodak_cpu", help="preset or TOML file with the settings")
    parser.add_argument("--models", default="ffn,cam,ngp", help="comma-separated models")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--downscale", type=int, help="override the config's downscale")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", help="folder for the per-fit outputs (default: a temporary folder)")
    parser.add_argument(
        "--out", type=Path, help="JSON results file (default: benchmarks/results/image/<images folder>/<device>.json)"
    )
    args = parser.parse_args(argv)

    models, modes = args.models.split(","), args.modes.split(",")
    for m in models:
        if m not in PRESETS:
            raise CamfieldsError(f"unknown model {m!r}; choose from {', '.join(PRESETS)}")
    for m in modes:
        if m not in MODES:
            raise CamfieldsError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if not Path(args.images).is_dir():
        raise CamfieldsError(f"image folder {args.images} does not exist (pass --images)")
    files = list_images(Path(args.images))[: args.limit]
    device = resolve_device(args.device)
    args.out = args.out or default_out("image", Path(args.images).name, f"{device_tag(device)}.json")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_image_"))
    overrides: dict = {"train": {"steps": args.steps}} if args.steps else {}
    if args.downscale:
        overrides["downscale"] = args.downscale

    results: dict = {mode: {} for mode in modes}
    settings = None
    t0 = time.perf_counter()
    for mode in modes:
        for model in models:
            cfg = resolve_config(model, args.config, {**overrides, "mode": mode})
            settings = settings or {"downscale": cfg.downscale, "train": vars(cfg.train)}
            print(f"[{time.perf_counter() - t0:7.0f}s] {mode} {model}: {len(files)} images", flush=True)
            results[mode][model] = fit_image_files(
                files, cfg, workdir / f"{mode}-{model}", str(device), resume=True, progress=False
            )
    print_table(results, models, modes)
    report = {
        "name": "bench_image",
        "description": "ffn vs cam vs ngp image fitting, same images, steps, batch and seed",
        "device": device_name(device),
        "images": args.images,
        "count": len(files),
        "config": args.config,
        "settings": settings,
        "psnr_delta_vs_ffn": deltas(results, models, modes),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    write_json(args.out, report)
    print(f"\nPSNR gain over ffn: {report['psnr_delta_vs_ffn']}\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
