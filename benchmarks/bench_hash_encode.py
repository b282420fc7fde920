#!/usr/bin/env python
"""Hash-grid encoding benchmark: the PyTorch path and the fused CUDA kernels side by side.

An Instant-NGP encoding (16 levels x 2 features, 2^19 entries per level, base resolution 16,
growth 1.5) of 2D and 3D points: forward, and forward + backward to the table (and, with
``coords``, to the coordinates too), median CUDA-event times and peak memory, for float32
and float16 tables. Needs a CUDA GPU, except for a dry run (``--device cpu --tiny``: both
columns on the PyTorch path, host-clock times, no memory figures).

    python benchmarks/bench_hash_encode.py   # writes benchmarks/results/kernels/hash_encode_<gpu>.json
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch
from bench_modulate import time_ms
from results_layout import default_out, device_tag

from camfields import HashGrid
from camfields.cli import run
from camfields.errors import CamfieldsError
from camfields.ops.hash_encode import hash_encode
from camfields.runtime import device_name
from camfields.training.checkpoint import write_json

#: Instant-NGP's encoding settings; --tiny shrinks the table and the point count.
SETTINGS = dict(levels=16, features_per_level=2, log2_table_size=19, base_resolution=16, growth=1.5)
TINY = dict(SETTINGS, log2_table_size=10)
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def step(grid: HashGrid, coords: torch.Tensor, table: torch.Tensor, backend: str, backward: str):
    """One call: forward only ("none"), or forward + backward to the table ("table") or to both ("coords")."""
    out = hash_encode(coords, table, grid.layout, backend=backend)
    if backward != "none":
        out.float().square().sum().backward()
        table.grad = coords.grad = None


def peak_mb(fn, device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def measure(dim: int, dtype: str, log2n: int, device: str, tiny: bool) -> dict:
    grid = HashGrid(dim, **(TINY if tiny else SETTINGS)).to(device)
    table = grid.table.detach().to(DTYPES[dtype]).requires_grad_()
    coords = torch.rand(1 << log2n, dim, device=device) * 2 - 1
    row = {"dim": dim, "table_dtype": dtype, "points": 1 << log2n}
    fused = "cuda" if device == "cuda" else "torch"
    for label, backend in (("torch", "torch"), ("fused", fused)):
        for backward in ("none", "table", "coords"):
            x = coords.requires_grad_(backward == "coords")
            fn = functools.partial(step, grid, x, table, backend, backward)
            row[f"{label}_{backward}_ms"] = time_ms(fn, device)
            row[f"{label}_{backward}_peak_mb"] = peak_mb(fn, device)
    for backward in ("none", "table", "coords"):
        row[f"speedup_{backward}"] = row[f"torch_{backward}_ms"] / row[f"fused_{backward}_ms"]
    return row


def summary(row: dict, label: str) -> str:
    """Forward / +table grad / +coords grad milliseconds of one column."""
    return "/".join(f"{row[f'{label}_{backward}_ms']:.2f}" for backward in ("none", "table", "coords"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20, help="log2 of the point count")
    parser.add_argument("--dims", default="2,3")
    parser.add_argument("--dtypes", default="float32,float16", help=f"table dtypes among {', '.join(DTYPES)}")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run, PyTorch path only")
    parser.add_argument("--tiny", action="store_true", help="2^10 entries per level and 2^10 points")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results, rewritten after every row (default: benchmarks/results/kernels/hash_encode_<device>.json)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CamfieldsError("bench_hash_encode needs a CUDA GPU (--device cpu for a dry run)")
    dtypes = args.dtypes.split(",")
    if any(d not in DTYPES for d in dtypes):
        raise CamfieldsError(f"--dtypes takes {', '.join(DTYPES)}, got {args.dtypes!r}")
    args.out = args.out or default_out("kernels", f"hash_encode_{device_tag(torch.device(args.device))}.json")
    report = {
        "name": "bench_hash_encode",
        "description": "hash-grid encoding (16 levels x 2, 2^19), PyTorch path vs fused kernels",
        "device": device_name(torch.device(args.device)),
        "settings": TINY if args.tiny else SETTINGS,
        "rows": [],
    }
    print(f"{report['device']}; ms forward / +table grad / +coords grad")
    for dim in (int(d) for d in args.dims.split(",")):
        for dtype in dtypes:
            log2n = 10 if args.tiny else args.points
            row = measure(dim, dtype, log2n, args.device, args.tiny)
            report["rows"].append(row)
            write_json(Path(args.out), report)
            print(f"{dim}D {dtype:>8} 2^{log2n}: torch {summary(row, 'torch')} | fused {summary(row, 'fused')}")


if __name__ == "__main__":
    raise SystemExit(run(main))
