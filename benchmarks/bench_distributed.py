#!/usr/bin/env python
"""Scaling benchmark: the fit scripts under torchrun with 1 and 2 (or more) processes.

Each task runs with the same config, seed and global batch for every process count;
the machine's cores are divided between the processes (``OMP_NUM_THREADS``). Reports
training samples per second (pixels, rays or frames; training time only, from each fit's
metrics) and the final quality, prints a table and writes JSON with the device name.

    python benchmarks/bench_distributed.py   # writes benchmarks/results/distributed/cpu_<cores>cores.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from results_layout import default_out, device_tag

from camfields.cli import run
from camfields.errors import CamfieldsError
from camfields.runtime import device_name, resolve_device
from camfields.training.checkpoint import read_json, write_json

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Task:
    """One fit: its script and arguments, and the samples in one global batch."""

    script: str
    args: tuple[str, ...]
    batch: int
    unit: str


TASKS = {
    # one Kodak image at half size, DDP over random pixel batches
    "image": Task(
        "fit_image.py",
        ("--image", str(DATA / "images" / "kodak" / "kodim05.png"), "--config", "image/kodak_cpu", "--downscale", "2"),
        2048,
        "pixels",
    ),
    # Blender lego at 100x100, DDP over random ray batches
    "nerf": Task(
        "fit_nerf.py",
        ("--data", str(DATA / "nerf" / "lego"), "--config", "nerf/lego_cpu", "--model", "vanilla_cam")
        + ("--steps", "150"),
        512,
        "rays",
    ),
    # Big Buck Bunny at 320x180, DDP over frames
    "video": Task(
        "fit_video.py",
        ("--video", str(DATA / "video" / "bigbuckbunny.mp4"), "--config", "video/bunny_cpu", "--epochs", "10"),
        2,
        "frames",
    ),
}


def launch(task: Task, procs: int, threads: int, out: Path, device: str) -> dict:
    """Run ``task`` under torchrun with ``procs`` processes; its metrics.json (kept when already there)."""
    metrics = out / "metrics.json"
    if not metrics.exists():
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        command += [str(REPO / "scripts" / task.script), *task.args, "--out", str(out), "--device", device, "--quiet"]
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise CamfieldsError(f"{task.script} with {procs} processes failed:\n{done.stderr[-2000:]}")
    return read_json(metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="CPU threads shared by the processes")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--workdir", help="folder for the fits (default: temporary); finished fits are reused")
    parser.add_argument(
        "--out", type=Path, help="JSON results (default: benchmarks/results/distributed/<device>_<cores>cores.json)"
    )
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CamfieldsError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    procs = [int(p) for p in args.procs.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="camfields-scaling-"))
    device = resolve_device(args.device)
    args.out = args.out or default_out("distributed", f"{device_tag(device)}_{args.cores}cores.json")

    rows = []
    for name in tasks:
        task = TASKS[name]
        for count in procs:
            threads = max(1, args.cores // count) if device.type == "cpu" else 1
            metrics = launch(task, count, threads, workdir / f"{name}_{count}", args.device)
            steps = metrics.get("steps") or metrics["epochs"] * -(-metrics["frames"] // task.batch)
            rows.append(
                {
                    "task": name,
                    "processes": count,
                    "threads_per_process": threads,
                    "steps": steps,
                    "global_batch": task.batch,
                    "unit": task.unit,
                    "seconds": metrics["seconds"],
                    "samples_per_second": steps * task.batch / metrics["seconds"],
                    "psnr": metrics["psnr"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    print(
        f"\n{'task':<7}{'procs':>6}{'threads':>8}{'steps':>7}{'seconds':>9}{'samples/s':>12}{'speedup':>9}{'PSNR':>8}"
    )
    for row in rows:
        first = next(r for r in rows if r["task"] == row["task"])
        speedup = row["samples_per_second"] / first["samples_per_second"]
        row["speedup"] = speedup
        row["psnr_change"] = row["psnr"] - first["psnr"]
        print(
            f"{row['task']:<7}{row['processes']:>6}{row['threads_per_process']:>8}{row['steps']:>7}"
            f"{row['seconds']:>9.1f}{row['samples_per_second']:>12.0f}{speedup:>9.2f}{row['psnr']:>8.2f}"
        )
    write_json(
        args.out,
        {"device": device_name(device), "cores": args.cores, "torch": torch.__version__, "results": rows},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
