"""The side-by-side benchmark shared by bench_nerf.py and bench_dynamic.py.

Every model sees the same data, resolution, steps, rays per step and seed (the config's
``[models.<name>]`` tables set the model sizes). Prints a table (PSNR / SSIM / LPIPS on the
evaluation views, PSNR decoded from each fit's scene.camf, sizes, seconds) and writes JSON with
the device; ``--compress BITS`` sets the file's weight depth.
Rerunning with the same --workdir keeps finished models and resumes an interrupted one.
With ``--seconds S`` each model first trains a short probe (``PROBE_STEPS``) to measure its
step rate and then trains for the steps that fill about S seconds (the probe includes the
warm-up, so the real fit usually takes a little less; its training seconds are reported).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_layout import default_out, device_tag

from camfields.config import check_choice, deep_merge
from camfields.runtime import device_name, resolve_device
from camfields.training.checkpoint import read_json, write_json

PROBE_STEPS = 300


def columns(bits: int) -> tuple[str, ...]:
    """The table's columns: quality of the float model, PSNR decoded from the ``bits``-bit scene file,
    the float32 size and the file's, in MB, and training seconds."""
    return ("psnr", "ssim", "lpips", f"psnr_{bits}bit", "size_mb", f"size_mb_{bits}bit", "seconds")


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def steps_for_seconds(
    args: argparse.Namespace,
    model: str,
    resolve: Callable[..., Any],
    fit: Callable[..., dict[str, Any]],
    overrides: dict,
    workdir: Path,
    device: str,
) -> int:
    """Steps that train ``model`` for about ``args.seconds``, from a ``PROBE_STEPS``-step probe fit."""
    probe_overrides = {"train": {"steps": PROBE_STEPS}, "eval_views": 1}
    probe_cfg = resolve(model, args.config, deep_merge(overrides, probe_overrides))
    probe = fit(args.data, probe_cfg, workdir / f"{model}_probe", device, resume=True, progress=False)
    steps = max(PROBE_STEPS, int(PROBE_STEPS * args.seconds / probe["seconds"]))
    rate = f"{PROBE_STEPS} steps in {probe['seconds']:.1f} s"
    print(f"  probe: {rate} -> {steps} steps for {args.seconds:.0f} s", flush=True)
    return steps


def run_benchmark(
    argv: list[str] | None,
    description: str,
    presets: dict[str, Any],
    resolve: Callable[..., Any],
    fit: Callable[..., dict[str, Any]],
    baselines: dict[str, str],
    default_data: Path,
    default_config: str,
    task: str,
) -> None:
    """Parse the command line, fit every model, print the table and write the JSON report.

    Args:
        presets: the task's model presets (names to run and check).
        resolve: ``resolve_config(model, config, overrides)`` of the task.
        fit: ``fit_*(data, cfg, out_dir, device, resume, progress)`` of the task.
        baselines: CAM variant -> the plain model it is compared with.
        task: the results folder of the default --out, ``benchmarks/results/<task>/<data name>/<device>.json``.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(default_data), help=f"scene (default: {default_data})")
    parser.add_argument("--config", default=default_config, help="preset or TOML file with the settings")
    parser.add_argument("--models", default=",".join(presets), help="comma-separated models")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="override the config's steps")
    length.add_argument("--seconds", type=float, help="train each model for about this many seconds (sets the steps)")
    parser.add_argument("--downscale", type=int, help="override the config's downscale")
    parser.add_argument("--eval-split", choices=("val", "test"), help="override the config's evaluation split")
    parser.add_argument(
        "--compress",
        type=int,
        metavar="BITS",
        help="weights' bit depth of each fit's scene.camf, whose decoded PSNR and bytes the table reports "
        "(default: the config's compression.bits)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", help="folder for the per-model outputs (default: a temporary folder)")
    parser.add_argument(
        "--out", type=Path, help=f"JSON results file (default: benchmarks/results/{task}/<data name>/<device>.json)"
    )
    args = parser.parse_args(argv)

    models = args.models.split(",")
    for model in models:
        check_choice(model, presets, "model")
    device = resolve_device(args.device)
    args.out = args.out or default_out(task, Path(args.data).stem, f"{device_tag(device)}.json")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_"))
    overrides: dict = {"train": {"steps": args.steps}} if args.steps else {}
    if args.downscale:
        overrides["downscale"] = args.downscale
    if args.eval_split:
        overrides["eval_split"] = args.eval_split
    if args.compress is not None:
        overrides["compression"] = {"bits": args.compress}
    bits = resolve(models[0], args.config, overrides).compression.bits

    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for model in models:
        cfg = resolve(model, args.config, overrides)
        out = workdir / model
        done = out / "metrics.json"
        if args.seconds and not done.exists():
            steps = steps_for_seconds(args, model, resolve, fit, overrides, workdir, str(device))
            cfg = resolve(model, args.config, deep_merge(overrides, {"train": {"steps": steps}}))
        print(f"[{time.perf_counter() - t0:7.0f}s] {model}: {cfg.train.steps} steps", flush=True)
        results[model] = (
            read_json(done) if done.exists() else fit(args.data, cfg, out, str(device), resume=True, progress=False)
        )

    first = results[models[0]]
    print(
        f"\n{first['scene']} {first['width']}x{first['height']}, {first['views']} {first['split']} views, "
        f"{first['steps']} steps, {first['device']}"
    )
    shown = columns(bits)
    print(f"{'model':<16}" + "".join(f"{c:>13}" for c in shown))
    for model in models:
        row = results[model]
        digits = {"ssim": 3, "lpips": 3, f"size_mb_{bits}bit": 3}
        print(f"{model:<16}" + "".join(f"{fmt(row.get(c), digits.get(c, 2)):>13}" for c in shown))
    files = {
        model: {"bits": bits, "bytes": row["file_bytes"], "psnr_drop": row["psnr"] - row[f"psnr_{bits}bit"]}
        for model, row in results.items()
        if "file_bytes" in row
    }
    gains = {
        cam: results[cam]["psnr"] - results[base]["psnr"]
        for cam, base in baselines.items()
        if {cam, base} <= set(results)
    }
    report = {
        "name": Path(parser.prog).stem,
        "description": description.splitlines()[0],
        "device": device_name(device),
        "scene": args.data,
        "config": args.config,
        "seconds_per_model": args.seconds,
        "psnr_gain_over_plain": gains,
        "scene_files": files,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    write_json(Path(args.out), report)
    print(f"\nPSNR gain of each CAM variant over its plain model: {gains}\nwrote {args.out}")
