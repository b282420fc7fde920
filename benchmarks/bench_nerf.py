#!/usr/bin/env python
"""NeRF benchmark: plain and CAM variants of each model side by side on one Blender scene.

Every model sees the same images, resolution, steps, rays per step and seed (the config's
``[models.<name>]`` tables set the model sizes). Prints a table (PSNR / SSIM / LPIPS on the
evaluation views, PSNR with 8-bit weights, size, seconds) and writes JSON with the device.
Rerunning with the same --workdir keeps finished models and resumes an interrupted one.

    python benchmarks/bench_nerf.py --out benchmarks/results/nerf_lego_cpu.json            # CPU, 100x100
    python benchmarks/bench_nerf.py --config nerf/lego --downscale 1 --out nerf_lego_gpu.json  # GPU, 400x400
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from camfields.cli import run
from camfields.config import check_choice
from camfields.runtime import device_name, resolve_device
from camfields.tasks.nerf import MODEL_PRESETS, fit_nerf, resolve_config
from camfields.training.checkpoint import read_json, write_json

DEFAULT_SCENE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nerf" / "lego"
#: each CAM variant and the plain model it is compared with
BASELINES = {"vanilla_cam": "vanilla", "vanilla_dircam": "vanilla", "ngp_cam": "ngp"}
COLUMNS = ("psnr", "ssim", "lpips", "psnr_8bit", "size_mb", "size_mb_8bit", "seconds")


def fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_SCENE), help="Blender scene folder (default: shared lego)")
    parser.add_argument("--config", default="nerf/lego_cpu", help="preset or TOML file with the settings")
    parser.add_argument("--models", default=",".join(MODEL_PRESETS), help="comma-separated models")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--downscale", type=int, help="override the config's downscale")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", help="folder for the per-model outputs (default: a temporary folder)")
    parser.add_argument("--out", required=True, help="JSON results file")
    args = parser.parse_args(argv)

    models = args.models.split(",")
    for model in models:
        check_choice(model, MODEL_PRESETS, "model")
    device = resolve_device(args.device)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_nerf_"))
    overrides: dict = {"train": {"steps": args.steps}} if args.steps else {}
    if args.downscale:
        overrides["downscale"] = args.downscale

    results: dict = {}
    t0 = time.perf_counter()
    for model in models:
        cfg = resolve_config(model, args.config, overrides)
        out = workdir / model
        print(f"[{time.perf_counter() - t0:7.0f}s] {model}: {cfg.train.steps} steps", flush=True)
        done = out / "metrics.json"
        results[model] = (
            read_json(done)
            if done.exists()
            else fit_nerf(args.data, cfg, out, str(device), resume=True, progress=False)
        )

    first = results[models[0]]
    print(
        f"\n{first['scene']} {first['width']}x{first['height']}, {first['views']} {first['split']} views, "
        f"{first['steps']} steps, {first['device']}"
    )
    print(f"{'model':<16}" + "".join(f"{c:>13}" for c in COLUMNS))
    for model in models:
        row = results[model]
        print(f"{model:<16}" + "".join(f"{fmt(row.get(c), 3 if c in ('ssim', 'lpips') else 2):>13}" for c in COLUMNS))
    gains = {
        model: results[model]["psnr"] - results[base]["psnr"]
        for model, base in BASELINES.items()
        if model in results and base in results
    }
    report = {
        "name": "bench_nerf",
        "description": "NeRF models, plain and with CAM, on one scene at equal steps, rays per step and seed",
        "device": device_name(device),
        "scene": args.data,
        "config": args.config,
        "psnr_gain_over_plain": gains,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    write_json(Path(args.out), report)
    print(f"\nPSNR gain of each CAM variant over its plain model: {gains}\nwrote {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
