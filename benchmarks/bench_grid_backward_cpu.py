#!/usr/bin/env python
"""CPU benchmark of the PyTorch reference grid backward: the current algorithm against the old one.

The old algorithm (defined here only, as the baseline) built the (N * K, F) weighted rows and
called one ``index_add_`` for the table gradient, and gathered ``table[index]`` (N, K, F) in one
piece for the weight gradient. The new one is ``camfields.ops.interp.table_gradient`` and
``weight_gradient``. For each grid of ``bench_modulate.GRIDS`` (dense 2D 32x32, tri-plane
3x128^2 product, hash 8 levels x 2^16 sum), scalar (width 1) and per-channel (width C)
modulation, on the same data: the gather backward alone, and ``grid_modulate`` forward+backward
(layer norm, ReLU, backend "torch"). Old and new runs alternate; each time is the minimum of the
repeats. A case whose old algorithm would need more than --old-memory-gib of temporaries runs at
fewer points (halved until it fits), old and new alike; the JSON says how many.

    python benchmarks/bench_grid_backward_cpu.py   # benchmarks/results/kernels/grid_backward_cpu_<threads>cores.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from bench_modulate import GRIDS
from results_layout import default_out

from camfields.cli import run
from camfields.ops import interp
from camfields.ops.grid_modulate import grid_modulate
from camfields.training.checkpoint import write_json

CASES = ("dense2d", "triplane", "hash")


def old_table_gradient(grad: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, rows: int) -> torch.Tensor:
    """The old table gradient: (N * K, F) weighted rows, one ``index_add_``."""
    weighted = (grad[:, None, :] * weights[..., None]).reshape(-1, grad.shape[1])
    return grad.new_zeros(rows, grad.shape[1]).index_add_(0, index.reshape(-1), weighted)


def old_weight_gradient(table: torch.Tensor, index: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The old weight gradient: the whole (N, K, F) gather at once."""
    return (table[index] * grad[:, None, :]).sum(-1)


@contextlib.contextmanager
def algorithm(old: bool) -> Iterator[None]:
    """Run ``_GatherWeighted``'s backward with the old functions (``old``) or the package's."""
    saved = interp.table_gradient, interp.weight_gradient
    if old:
        interp.table_gradient, interp.weight_gradient = old_table_gradient, old_weight_gradient
    try:
        yield
    finally:
        interp.table_gradient, interp.weight_gradient = saved


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (the platform string where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def best_ms(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum milliseconds of each run over ``repeats`` rounds, the runs alternating (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: min(ts) for name, ts in times.items()}


def case_points(kind: str, n: int, width: int, limit_bytes: float) -> int:
    """Points (n halved as needed) at which the old backward's temporaries fit in ``limit_bytes``."""
    dim, factory = GRIDS[kind]
    grid = factory(1)
    corners = grid.corners(torch.zeros(1, dim))
    entries = corners.index.shape[1] * corners.index.shape[2]  # table rows read per point
    while n > 1 and 2 * n * entries * 2 * width * 4 > limit_bytes:  # (N, K, F) gather and its product
        n //= 2
    return n


def measure(kind: str, n: int, channels: int, per_channel: bool, repeats: int) -> dict:
    """Old vs new: gather backward alone and grid_modulate forward+backward, on one data set."""
    dim, factory = GRIDS[kind]
    width = channels if per_channel else 1
    grid = factory(2 * width)
    with torch.no_grad():
        grid.table.normal_(0, 0.1)
    coords = (torch.rand(n, dim) * 2 - 1).requires_grad_()
    h = torch.randn(n, channels, requires_grad=True)
    cotangent = torch.randn(n, channels)
    corners = grid.corners(coords)

    # the gather backward alone, on combine_corners' inputs
    index, weight, combine = corners
    groups, k = index.shape[1], index.shape[2]
    rows = n if combine == "sum" else n * groups
    flat_index = index.reshape(rows, -1)
    flat_weight = weight.detach().reshape(rows, -1)
    grad = torch.randn(rows, 2 * width)
    table = grid.table.detach()

    def gather_backward(old: bool) -> tuple[torch.Tensor, torch.Tensor]:
        table_grad, weight_grad = (
            (old_table_gradient, old_weight_gradient) if old else (interp.table_gradient, interp.weight_gradient)
        )
        return table_grad(grad, flat_index, flat_weight, table.shape[0]), weight_grad(table, flat_index, grad)

    def full(old: bool) -> tuple[torch.Tensor, ...]:
        with algorithm(old):
            out = grid_modulate(h, grid.table, grid.corners(coords), 0, width, norm="layer", backend="torch")
            return torch.autograd.grad(out, [h, grid.table, coords], cotangent)

    gather_ms = best_ms({"old": lambda: gather_backward(True), "new": lambda: gather_backward(False)}, repeats)
    full_ms = best_ms({"old": lambda: full(True), "new": lambda: full(False)}, repeats)
    diff = max(
        ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        for a, b in zip((*gather_backward(False), *full(False)), (*gather_backward(True), *full(True)))
    )
    return {
        "grid": kind,
        "modulation": "channel" if per_channel else "scalar",
        "points": n,
        "channels": channels,
        "table": list(table.shape),
        "gather": {"rows": rows, "corners": k * (groups if combine == "sum" else 1)},
        "gather_backward_ms": {**gather_ms, "speedup": gather_ms["old"] / gather_ms["new"]},
        "grid_modulate_fwd_bwd_ms": {**full_ms, "speedup": full_ms["old"] / full_ms["new"]},
        "max_relative_gradient_difference": diff,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2-points", type=int, default=18)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-memory-gib", type=float, default=10.0)
    parser.add_argument("--goal", type=float, default=3.0, help="least gather-backward speedup (issue 28)")
    parser.add_argument(
        "--out", type=Path, help="default: benchmarks/results/kernels/grid_backward_cpu_<threads>cores.json"
    )
    args = parser.parse_args(argv)
    args.out = args.out or default_out("kernels", f"grid_backward_cpu_{torch.get_num_threads()}cores.json")
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    results = []
    print(f"{'grid':9} {'mod':8} {'points':>7} | gather bwd old / new ms  x    | fwd+bwd old / new ms  x")
    for kind in CASES:
        for per_channel in (False, True):
            width = args.channels if per_channel else 1
            n = case_points(kind, 1 << args.log2_points, width, args.old_memory_gib * 2**30)
            r = measure(kind, n, args.channels, per_channel, args.repeats)
            r["goal_met"] = r["gather_backward_ms"]["speedup"] >= args.goal
            results.append(r)
            g, f = r["gather_backward_ms"], r["grid_modulate_fwd_bwd_ms"]
            print(
                f"{kind:9} {r['modulation']:8} {n:7d} | {g['old']:9.1f} / {g['new']:8.1f} {g['speedup']:5.2f} |"
                f" {f['old']:8.1f} / {f['new']:8.1f} {f['speedup']:5.2f}",
                flush=True,
            )
    report = {
        "name": "grid_backward_cpu",
        "description": "PyTorch reference gather backward (table + weight gradients): old index_add_ "
        "algorithm vs camfields.ops.interp.table_gradient / weight_gradient, same data, minimum of repeats",
        "device": {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            # the machine is shared: runnable processes (1-minute load) before and after the run
            "load_average": [load_before, os.getloadavg()[0]],
        },
        "goal_speedup": args.goal,
        "results": results,
    }
    write_json(args.out, report)
    return report


if __name__ == "__main__":
    sys.exit(run(main))
