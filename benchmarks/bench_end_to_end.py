#!/usr/bin/env python
"""End-to-end training steps: the PyTorch path against the fused kernels, in one process.

Rows, each timed twice on the same data from the same seed: with ``CAMFIELDS_BACKEND=torch``
(every op takes its PyTorch reference) and with the variable unset (every op left at
backend "auto", CAM modulation and the hash encoding alike, takes its fused kernels on a GPU):

* ``image``: the ``cam`` model of ``tasks/image.py`` on the embedded 512x512 image, full batch;
* ``vanilla_cam`` and ``ngp``: the NeRF presets of ``tasks/nerf.py`` with the scene config
  ``nerf/lego``, 4096 rays per step, on lego at 400x400 (``../shared/data/nerf/lego`` is
  already 400x400: downscale 1); skipped, with the reason, when the scene is absent.

A step is the training loop's: the task's loss (batch drawn, rays sampled and rendered),
backward, Adam step. After ``--warmup`` steps a two-step probe sets how many steps fill about
``--seconds``; those run with one device sync at the end. Reported per variant: steps/s and
peak memory (``torch.cuda.max_memory_allocated``, data included); per row the ratio fused /
torch and, on a GPU, the issue's goal (>= 2x). A table is printed and the JSON (with the
device name) rewritten after every row. The NeRF rows are timed early in a fit: with fewer
than ~270 warm-up steps the occupancy grid still marks every cell occupied.

    python benchmarks/bench_end_to_end.py    # writes benchmarks/results/kernels/end_to_end_<gpu>.json
    python benchmarks/bench_end_to_end.py --device cpu --tiny --out /tmp/end_to_end.json  # seconds

(Its own file rather than ``bench_modulate.py --end-to-end``: that one times single ops on
synthetic tensors and needs a GPU; this one builds the tasks' models and data and also runs
on the CPU.)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from results_layout import default_out, device_tag

from camfields.cli import run
from camfields.config import deep_merge
from camfields.distributed import Shard
from camfields.fields import build_field
from camfields.io.blender import load_blender
from camfields.io.images import downscale, load_embedded_image
from camfields.ops.backend import cuda_extension_status
from camfields.render.model import NeRFModel, build_radiance_field
from camfields.runtime import device_name, resolve_device
from camfields.tasks import image, nerf
from camfields.tasks.radiance import OccupancyRefresh, RayObjective, split_rays
from camfields.training.checkpoint import write_json
from camfields.training.hooks import Hook
from camfields.training.loop import TrainingStep
from camfields.training.optim import build_optimizer

SCENE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nerf" / "lego"
ROWS = ("image", "vanilla_cam", "ngp")
VARIANTS = ("torch", "fused")
#: issue 28's goal for every row: fused steps/s over torch steps/s
GOAL = 2.0
#: --tiny: CPU-sized data and models that keep each preset's structure
TINY_IMAGE: dict[str, Any] = {"field": {"encoding": {"num_features": 16}, "hidden": 32}}
TINY_IMAGE_DOWNSCALE = 16  # 512x512 -> 32x32
TINY_RAYS = 128
TINY_NERF: dict[str, Any] = {
    "downscale": 8,  # 400x400 -> 50x50
    "sampler": {"grid_resolution": 16, "steps_per_diagonal": 32, "warmup": 16, "coarse": 8, "fine": 8},
}
TINY_MODELS: dict[str, dict[str, Any]] = {
    "vanilla_cam": {
        "field": {
            "trunk": {"hidden": 32, "depth": 4, "skips": [2], "modulation": {"resolution": [16, 16, 16]}},
            "head": {"hidden": 16},
            "features": 16,
        }
    },
    "ngp": {"field": {"trunk": {"encoding": {"hash": {"levels": 4, "log2_table_size": 10}}}}},
}

Step = Callable[[], None]
#: the training views, loaded once for all NeRF rows
load_train_views = functools.lru_cache(maxsize=1)(load_blender)


@contextlib.contextmanager
def backend_variant(variant: str) -> Iterator[None]:
    """``CAMFIELDS_BACKEND=torch`` for the "torch" variant, unset for "fused"; restored afterwards."""
    before = os.environ.pop("CAMFIELDS_BACKEND", None)
    if variant == "torch":
        os.environ["CAMFIELDS_BACKEND"] = "torch"
    try:
        yield
    finally:
        os.environ.pop("CAMFIELDS_BACKEND", None)
        if before is not None:
            os.environ["CAMFIELDS_BACKEND"] = before


def training_step(
    model: torch.nn.Module, objective: Any, optimizer: torch.optim.Optimizer, hooks: list[Hook] | None = None
) -> Step:
    """One step as the training loop takes it (hooks, loss on a drawn batch, backward, Adam)."""
    generator = torch.Generator().manual_seed(0)
    take_step = TrainingStep(model, objective, optimizer, hooks or [], Shard())
    count = itertools.count()

    def step() -> None:
        take_step(next(count), generator)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Step, device: torch.device, warmup: int, seconds: float, max_steps: int) -> tuple[int, float]:
    """(steps timed, their seconds): ``warmup`` steps, a 2-step probe, then about ``seconds`` of steps."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(2):
        step()
    synchronize(device)
    probe = (time.perf_counter() - start) / 2
    steps = max(3, min(max_steps, int(seconds / max(probe, 1e-6))))
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps, time.perf_counter() - start


def image_case(device: torch.device, tiny: bool) -> tuple[dict[str, Any], Callable[[], Step]]:
    """The ``cam`` image fit at full batch: (row description, builder of a fresh step)."""
    pixels = downscale(load_embedded_image().pixels, TINY_IMAGE_DOWNSCALE if tiny else 1).to(device)
    height, width, channels = pixels.shape
    cfg = image.resolve_config("cam", overrides=TINY_IMAGE if tiny else None)
    objective = image.ImageObjective(pixels, image.training_mask(height, width, "regression").to(device), 0)

    def build() -> Step:
        torch.manual_seed(cfg.train.seed)
        model = build_field(cfg.field, in_dim=2, out_dim=channels).to(device)
        return training_step(model, objective, build_optimizer(model, cfg.train))

    return {"size": f"{width}x{height}", "batch": height * width}, build


def nerf_case(
    model_name: str, scene: Path, device: torch.device, tiny: bool, rays: int
) -> tuple[dict[str, Any], Callable[[], Step]]:
    """A NeRF preset on the lego training views: (row description, builder of a fresh step)."""
    overrides: dict[str, Any] = {"downscale": 1, "train": {"batch_size": rays}}
    if tiny:
        overrides = deep_merge(deep_merge(overrides, TINY_NERF), TINY_MODELS[model_name])
    cfg = nerf.resolve_config(model_name, "nerf/lego", overrides)
    split = load_train_views(scene, "train", cfg.downscale, tuple(cfg.background))
    background = torch.tensor(cfg.background, device=device)
    objective = RayObjective(split_rays(split, device), cfg.train.batch_size, background)

    def build() -> Step:
        torch.manual_seed(cfg.train.seed)
        field = build_radiance_field(cfg.field, torch.tensor(cfg.aabb))
        model = NeRFModel(field, cfg.sampler).to(device)
        return training_step(model, objective, build_optimizer(model, cfg.train), [OccupancyRefresh()])

    height, width = split.images.shape[1:3]
    return {"size": f"{width}x{height}", "views": len(split.images), "batch": cfg.train.batch_size}, build


def measure(build: Callable[[], Step], variant: str, device: torch.device, args: argparse.Namespace) -> dict:
    """Steps/s and peak memory of one variant, from a freshly built model."""
    with backend_variant(variant):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        steps, seconds = time_steps(build(), device, args.warmup, args.seconds, args.max_steps)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds, "peak_memory_mb": peak}


def fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    parser.add_argument("--data", type=Path, default=SCENE, help="the lego scene folder (Blender format)")
    parser.add_argument("--rays", type=int, default=4096, help="rays per NeRF step")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized images, rays and models (a smoke run)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per variant")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per variant (about)")
    parser.add_argument("--max-steps", type=int, default=1000, help="at most this many timed steps per variant")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results, rewritten after every row (default: benchmarks/results/kernels/end_to_end_<device>.json)",
    )
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    device = resolve_device(args.device)
    args.out = args.out or default_out("kernels", f"end_to_end_{device_tag(device)}.json")
    on_gpu = device.type == "cuda"
    rays = TINY_RAYS if args.tiny else args.rays
    report: dict[str, Any] = {
        "name": "bench_end_to_end",
        "description": "training steps per second, CAMFIELDS_BACKEND=torch vs the fused path, same process",
        "device": device_name(device),
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "data")} | {"rays": rays},
        "goal_speedup": GOAL,
        "rows": [],
        "skipped": [],
    }
    if on_gpu:  # without the extension "fused" would quietly be the PyTorch path too
        available, reason = cuda_extension_status()
        report["fused_extension"] = {"available": available, "reason": reason}
        if not available:
            print(f"the fused kernels are unavailable ({reason}): both variants take the PyTorch path")
    else:
        report["note"] = "on the CPU both variants take the PyTorch path (the kernels need CUDA tensors)"
    print(f"{report['device']}; torch {torch.__version__}; {'tiny' if args.tiny else 'full'} sizes")
    print(
        f"{'row':>12} {'size':>9} {'batch':>7} | {'torch st/s':>10} {'fused st/s':>10} {'ratio':>6} | "
        f"{'peak MB t/f':>13} | goal"
    )
    for name in rows:
        if name == "image":
            info, build = image_case(device, args.tiny)
        elif not (args.data / "transforms_train.json").exists():
            reason = f"no Blender scene at {args.data}"
            report["skipped"].append({"row": name, "reason": reason})
            write_json(args.out, report)
            print(f"{name:>12} skipped: {reason}", flush=True)
            continue
        else:
            info, build = nerf_case(name, args.data, device, args.tiny, rays)
        variants = {variant: measure(build, variant, device, args) for variant in VARIANTS}
        ratio = variants["fused"]["steps_per_second"] / variants["torch"]["steps_per_second"]
        row = {"row": name, **info, "variants": variants, "ratio": ratio}
        row["meets_goal"] = ratio >= GOAL if on_gpu else None
        report["rows"].append(row)
        write_json(args.out, report)
        goal = "-" if row["meets_goal"] is None else ("pass" if row["meets_goal"] else "FAIL")
        t, f = variants["torch"], variants["fused"]
        print(
            f"{name:>12} {info['size']:>9} {info['batch']:>7} | {t['steps_per_second']:10.2f} "
            f"{f['steps_per_second']:10.2f} {ratio:5.2f}x | {fmt_mb(t['peak_memory_mb']):>6}/"
            f"{fmt_mb(f['peak_memory_mb']):>6} | >= {GOAL:g}x {goal}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(run(main))
