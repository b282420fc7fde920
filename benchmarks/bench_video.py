#!/usr/bin/env python
"""Video benchmark: a plain generator and its CAM variant side by side, over seeds and quantizers.

Every fit sees the same clip, epochs, bit depth and seed; each model is sized by its own
parameter target (``--models ffnerv:51500,ffnerv_cam:50000``: the first is the baseline, give
it at least the parameters of the others). For every quantizer (one step per tensor or per
output channel) and seed it prints PSNR (decoded bitstream, 8-bit frames), the float model's
PSNR, the PSNR with every weight rounded to its nearest level, bpp from the file and the
parameters, then each model's PSNR minus the baseline's, and writes JSON with the device
name. Fits run ``--jobs`` at a time, one CPU thread each by default; rerunning with the same
--workdir resumes unfinished fits and re-encodes finished ones.

    python benchmarks/bench_video.py --epochs 300 --seeds 0,1 --quant-steps tensor,channel \\
        --workdir runs/bench-video --out benchmarks/results/video/bigbuckbunny_320x180/cam_vs_plain_300epochs.json

Without --out it writes ``benchmarks/results/video/<clip>_<W>x<H>/cam_vs_plain_<device>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from results_layout import default_out, device_tag

from camfields.cli import comma_ints, comma_names, run
from camfields.config import check_choice, deep_merge
from camfields.errors import CamfieldsError
from camfields.runtime import device_name, resolve_device
from camfields.tasks.video import PRESETS, QUANT_STEPS, VideoConfig, fit_video, resolve_config
from camfields.training.checkpoint import write_json

DEFAULT_VIDEO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "video" / "bigbuckbunny.mp4"
COLUMNS = ("params", "bpp", "psnr", "psnr_float", "psnr_nearest_rounding", "ms_ssim", "seconds", "resumed_from")


def model_targets(text: str) -> list[tuple[str, int]]:
    """``"ffnerv:51500,ffnerv_cam:50000"`` -> [("ffnerv", 51500), ("ffnerv_cam", 50000)], names checked."""
    pairs = []
    for item in [v for v in text.split(",") if v.strip()]:
        name, _, target = item.strip().partition(":")
        if not target.isdigit():
            raise CamfieldsError(f"--models entries look like ffnerv:51500 (model:target parameters), got {item!r}")
        check_choice(name, PRESETS, "--models name")
        pairs.append((name, int(target)))
    if len(pairs) < 2:
        raise CamfieldsError("--models needs a baseline and at least one model to compare with it")
    return pairs


def fit_one(job: dict[str, Any]) -> dict[str, Any]:
    """Fit (or resume, or re-encode) one point, with ``threads`` CPU threads (in a worker process or here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        cfg = resolve_config(job["model"], job["config"], job["overrides"])
        metrics = fit_video(job["video"], cfg, job["out"], job["device"], resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"model": job["model"], "seed": job["seed"], "quant_steps": job["quant_steps"]} | {
        k: metrics[k] for k in COLUMNS
    }


def run_jobs(jobs: list[dict[str, Any]], parallel: int) -> list[dict[str, Any]]:
    if parallel == 1:
        return [fit_one(job) for job in jobs]
    with ProcessPoolExecutor(parallel, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fit_one, jobs))


def gains(results: list[dict[str, Any]], baseline: str) -> dict[str, dict[str, Any]]:
    """Per quantizer and model: PSNR minus the baseline's at the same seed, per seed and mean."""
    table: dict[str, dict[str, Any]] = {}
    base = {(r["quant_steps"], r["seed"]): r["psnr"] for r in results if r["model"] == baseline}
    for r in results:
        if r["model"] == baseline:
            continue
        entry = table.setdefault(r["quant_steps"], {}).setdefault(r["model"], {"per_seed": {}})
        entry["per_seed"][r["seed"]] = r["psnr"] - base[(r["quant_steps"], r["seed"])]
    for per_model in table.values():
        for entry in per_model.values():
            entry["mean"] = sum(entry["per_seed"].values()) / len(entry["per_seed"])
    return table


def print_table(results: list[dict[str, Any]], table: dict[str, dict[str, Any]], baseline: str) -> None:
    print(
        f"\n{'quant':<8}{'seed':>5} {'model':<12}{'params':>8}{'bpp':>8}{'PSNR':>7}{'float':>7}{'nearest':>8}"
        f"{'MS-SSIM':>8}{'s':>7}"
    )
    for r in sorted(results, key=lambda r: (r["quant_steps"], r["seed"])):
        print(
            f"{r['quant_steps']:<8}{r['seed']:>5} {r['model']:<12}{r['params']:>8}{r['bpp']:>8.4f}"
            f"{r['psnr']:>7.2f}{r['psnr_float']:>7.2f}{r['psnr_nearest_rounding']:>8.2f}{r['ms_ssim']:>8.4f}"
            f"{r['seconds']:>7.0f}"
        )
    for quant, per_model in table.items():
        for model, entry in per_model.items():
            seeds = ", ".join(f"{d:+.2f}" for d in entry["per_seed"].values())
            print(f"{quant}: {model} - {baseline}: {seeds} dB (mean {entry['mean']:+.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(DEFAULT_VIDEO), help=f"video file or folder (default: {DEFAULT_VIDEO})")
    parser.add_argument("--config", default="video/bunny_cpu", help="preset or TOML file with the settings")
    parser.add_argument("--models", default="ffnerv:51500,ffnerv_cam:50000", help="baseline first, model:params")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--quant-steps", default="tensor,channel", help="comma-separated: tensor, channel")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--bits", type=int, help="override the config's weight bit depth")
    parser.add_argument("--prune", type=float, help="override the config's pruned fraction of each convolution")
    parser.add_argument("--qat-dampening", type=float, help="override the config's pull of the weights to their levels")
    parser.add_argument(
        "--rate-weight", type=float, help="override the config's weight of the estimated bpp in the loss"
    )
    parser.add_argument("--jobs", type=int, default=1, help="fits at a time (separate processes)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per fit")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", required=True, help="folder for the fits (rerun to resume)")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results file (default: benchmarks/results/video/<clip>_<W>x<H>/cam_vs_plain_<device>.json)",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else shared the machine)")
    args = parser.parse_args(argv)

    models = model_targets(args.models)
    quants = comma_names(args.quant_steps, QUANT_STEPS, "--quant-steps")
    seeds = comma_ints(args.seeds)
    if args.jobs < 1 or args.threads < 1:
        raise CamfieldsError("--jobs and --threads must be at least 1")
    if not Path(args.video).exists():
        raise CamfieldsError(f"video {args.video} does not exist (pass --video)")
    device = resolve_device(args.device)
    given = {"epochs": args.epochs, "prune": args.prune}
    compression = {"bits": args.bits, "qat_dampening": args.qat_dampening, "rate_weight": args.rate_weight}
    common = {k: v for k, v in given.items() if v is not None}
    common["compression"] = {k: v for k, v in compression.items() if v is not None}
    reference = resolve_config(models[0][0], args.config, common)
    clip = Path(args.video).stem + (f"_{reference.width}x{reference.height}" if reference.width else "")
    args.out = args.out or default_out("video", clip, f"cam_vs_plain_{device_tag(device)}.json")
    chosen, preset = reference.compression, VideoConfig().compression
    suffix = f"{chosen.bits}bit" + (f"_prune{reference.prune:g}" if reference.prune else "")
    suffix += f"_damp{chosen.qat_dampening:g}" if chosen.qat_dampening != preset.qat_dampening else ""
    suffix += f"_rate{chosen.rate_weight:g}" if chosen.rate_weight else ""
    jobs = [
        {
            "model": model,
            "seed": seed,
            "quant_steps": quant,
            "video": args.video,
            "config": args.config,
            "overrides": deep_merge(
                common, {"target_params": target, "compression": {"quant_steps": quant}, "train": {"seed": seed}}
            ),
            "out": Path(args.workdir) / f"{model}_{target}_{suffix}_{quant}_s{seed}",
            "device": str(device),
            "threads": args.threads,
        }
        for quant in quants
        for seed in seeds
        for model, target in models
    ]
    t0 = time.perf_counter()
    results = run_jobs(jobs, args.jobs)
    baseline = models[0][0]
    table = gains(results, baseline)
    print_table(results, table, baseline)
    report = {
        "name": "bench_video",
        "description": f"{', '.join(m for m, _ in models[1:])} vs {baseline}: same clip, epochs, bits and seeds",
        "device": device_name(device),
        "video": args.video,
        "config": args.config,
        "models": dict(models),
        "overrides": common,
        "jobs": args.jobs,
        "threads_per_fit": args.threads,
        "psnr_gain_vs_baseline": table,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "note": args.note,
        "results": results,
    }
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
