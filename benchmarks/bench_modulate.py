#!/usr/bin/env python
"""Modulation op benchmark: the PyTorch reference and the fused CUDA kernels side by side.

For each point count and channel count: forward and forward+backward time (CUDA events,
warm-up, median of repeats), peak memory, and achieved bandwidth against the minimum bytes
the op must move (read h, gamma, beta; write out; backward also reads grad_out and writes
the three gradients) and against the device's measured copy bandwidth. ``--goals`` runs only
issue 28's goal rows (2^20 points x 128 channels: dense 2D 32x32 scalar and per channel,
tri-plane 3x128^2 product, hash 16 levels x 2^19, each also under deterministic mode) and
prints each goal beside its measurement, pass or fail. Needs a CUDA GPU, except for a dry
run (``--device cpu --tiny``: tiny sizes, both columns on the PyTorch path, host-clock times,
no memory figures). Whole training steps, torch against fused: ``bench_end_to_end.py``.

    python benchmarks/bench_modulate.py           # writes benchmarks/results/kernels/modulate_<gpu>.json
    python benchmarks/bench_modulate.py --goals   # writes benchmarks/results/kernels/modulate_goals_<gpu>.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from results_layout import default_out, device_tag

from camfields import DenseGrid, HashGrid, PlaneGrid, modulate
from camfields.cli import run
from camfields.errors import CamfieldsError
from camfields.ops.grid_modulate import grid_modulate
from camfields.runtime import device_name
from camfields.training.checkpoint import write_json


def time_ms_host(fn, repeats: int = 2) -> float:
    """Median milliseconds of ``fn()`` by the host clock, after one warm-up call (the CPU dry run)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def time_ms(fn, device: str = "cuda", repeats: int = 20, warmup: int = 5, budget_ms: float = 2000.0) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events (fewer repeats, at least 3,
    when the warm-up says ``repeats`` would take longer than ``budget_ms``); on the CPU by the host clock."""
    if device != "cuda":
        return time_ms_host(fn)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(warmup):
        fn()
    end.record()
    torch.cuda.synchronize()
    repeats = max(3, min(repeats, int(budget_ms * warmup / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_gbs(device: str) -> float:
    """Device-to-device copy bandwidth (read + write) in GB/s (a 16 MB copy on the CPU)."""
    src = torch.empty(1 << (28 if device == "cuda" else 24), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    return 2 * src.numel() / ms / 1e6


def hash_modulation_grid(levels: int, log2_table_size: int, growth: float):
    """A factory of summed hash modulation grids (3D, 16 nodes at the coarsest level, zero start)."""
    return lambda f: HashGrid(
        3,
        levels=levels,
        features_per_level=f,
        log2_table_size=log2_table_size,
        base_resolution=16,
        growth=growth,
        reduce="sum",
        init_scale=0.0,
    )


GRIDS = {
    "dense2d": (2, lambda f: DenseGrid((32, 32), f)),
    "triplane": (3, lambda f: PlaneGrid((128, 128, 128), f, combine="product")),
    "hash": (3, hash_modulation_grid(8, 16, 1.5)),
    # the goal's hash grid: the ngp preset's 16 levels of up to 2^19 entries
    "hash16": (3, hash_modulation_grid(16, 19, 1.447)),
}

#: issue 28's goals at 2^LOG2N points x C channels, layer norm + ReLU, fp32: (op, per channel) ->
#: (least fused/torch forward+backward speedup, most fused forward+backward ms or None)
GOAL_LOG2N, GOAL_CHANNELS = 20, 128
TINY_LOG2N, TINY_CHANNELS = 10, 16  # --tiny: the goal rows at this size (a dry run)
GOALS = {
    ("dense2d", False): (5.0, 3.0),
    ("dense2d", True): (5.0, 3.0),
    ("triplane", False): (4.0, None),
    ("hash16", False): (3.0, None),
}
GOAL_COPY_SHARE = 0.5  # least share of the copy bandwidth, fused forward+backward
GOAL_DETERMINISTIC_COST = 1.5  # most deterministic-mode / default fused forward+backward time


def make_case(op: str, n: int, c: int, per_channel: bool, device: str = "cuda"):
    """(function of backend -> output, differentiable inputs, minimum bytes forward, minimum bytes fwd+bwd)."""
    h = torch.randn(n, c, device=device, requires_grad=True)
    width = c if per_channel else 1
    io = n * c * 4
    if op == "modulate":
        gamma = torch.randn(n, width, device=device, requires_grad=True)
        beta = torch.randn(n, width, device=device, requires_grad=True)
        mods = n * width * 4
        run_op = lambda backend: modulate(h, gamma, beta, norm="layer", backend=backend)  # noqa: E731
        return run_op, [h, gamma, beta], 2 * io + 2 * mods, 5 * io + 6 * mods
    dim, factory = GRIDS[op]
    grid = factory(2 * width).to(device)
    with torch.no_grad():
        grid.table.normal_(0, 0.1)
    coords = (torch.rand(n, dim, device=device) * 2 - 1).requires_grad_()

    def run_op(backend):
        return grid_modulate(h, grid.table, grid.corners(coords), 0, width, norm="layer", backend=backend)

    return run_op, [h, grid.table, coords], 2 * io + n * dim * 4, 5 * io + 3 * n * dim * 4


def measure(op: str, n: int, c: int, per_channel: bool, backend: str, device: str = "cuda") -> dict:
    run_op, inputs, bytes_fwd, bytes_fwd_bwd = make_case(op, n, c, per_channel, device)
    cot = torch.randn(n, c, device=device)

    def forward():
        with torch.no_grad():
            run_op(backend)

    def forward_backward():
        torch.autograd.grad(run_op(backend), inputs, cot)

    fwd = time_ms(forward, device)
    if device != "cuda":
        fwd_bwd, peak_mb = time_ms(forward_backward, device), None
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fwd_bwd = time_ms(forward_backward, device)
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {
        "forward_ms": fwd,
        "forward_backward_ms": fwd_bwd,
        "peak_extra_mb": peak_mb,
        "forward_gbs": bytes_fwd / fwd / 1e6,
        "forward_backward_gbs": bytes_fwd_bwd / fwd_bwd / 1e6,
    }


def profile(op: str, n: int, c: int, per_channel: bool, rows: int = 12) -> None:
    """Print the CUDA kernels that take the time of one forward+backward, per backend."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run_op, inputs, _, _ = make_case(op, n, c, per_channel)
    cot = torch.randn(n, c, device="cuda")
    for backend in ("torch", "cuda"):
        torch.autograd.grad(run_op(backend), inputs, cot)  # warm-up
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            torch.autograd.grad(run_op(backend), inputs, cot)
            torch.cuda.synchronize()
        print(f"\n{op} n={n} C={c} {'channel' if per_channel else 'scalar'}, backend {backend}:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows))


def profile_case(text: str) -> tuple[str, int, int, bool]:
    """``OP,LOG2N,C,scalar|channel`` -> (op, points, channels, per_channel), for ``--profile``."""
    parts = text.split(",")
    if (
        len(parts) != 4
        or parts[0] not in ("modulate", *GRIDS)
        or parts[3] not in ("scalar", "channel")
        or not (parts[1].isdigit() and parts[2].isdigit())
    ):
        raise argparse.ArgumentTypeError(
            f"expected OP,LOG2N,C,scalar|channel (e.g. dense2d,20,128,scalar), got {text!r}"
        )
    return parts[0], 1 << int(parts[1]), int(parts[2]), parts[3] == "channel"


def measure_row(
    op: str, log_n: int, c: int, per_channel: bool, deterministic: bool, copy_gbs: float, device: str = "cuda"
) -> dict:
    """Both backends on one case (and, with ``deterministic``, backend "auto" in deterministic mode).

    On the CPU (a dry run) the "cuda" column is backend "auto", which is the PyTorch path there.
    """
    t = measure(op, 1 << log_n, c, per_channel, "torch", device)
    k = measure(op, 1 << log_n, c, per_channel, "cuda" if device == "cuda" else "auto", device)
    row = {
        "op": op,
        "points": 1 << log_n,
        "channels": c,
        "per_channel": per_channel,
        "torch": t,
        "cuda": k,
        "speedup_forward_backward": t["forward_backward_ms"] / k["forward_backward_ms"],
        "cuda_fraction_of_copy_bandwidth": k["forward_backward_gbs"] / copy_gbs,
    }
    if deterministic and op != "modulate":
        torch.use_deterministic_algorithms(True)
        try:
            row["deterministic"] = measure(op, 1 << log_n, c, per_channel, "auto", device)
        finally:
            torch.use_deterministic_algorithms(False)
        row["deterministic_cost"] = row["deterministic"]["forward_backward_ms"] / k["forward_backward_ms"]
    return row


def goal_checks(row: dict) -> dict[str, dict]:
    """Each goal of a goal row: {name: {"value", "goal", "pass"}}."""
    speedup, most_ms = GOALS[(row["op"], row["per_channel"])]
    checks = {
        "speedup_forward_backward": (row["speedup_forward_backward"], speedup, True),
        "copy_bandwidth_share": (row["cuda_fraction_of_copy_bandwidth"], GOAL_COPY_SHARE, True),
        "deterministic_cost": (row["deterministic_cost"], GOAL_DETERMINISTIC_COST, False),
    }
    if most_ms is not None:
        checks["cuda_forward_backward_ms"] = (row["cuda"]["forward_backward_ms"], most_ms, False)
    return {
        name: {"value": value, "goal": goal, "pass": value >= goal if at_least else value <= goal}
        for name, (value, goal, at_least) in checks.items()
    }


def fmt_mb(value: float | None) -> str:
    return f"{'-':>6}" if value is None else f"{value:6.0f}"


def print_goals(checks: dict[str, dict]) -> None:
    parts = []
    for name, check in checks.items():
        sign = "<=" if name in ("deterministic_cost", "cuda_forward_backward_ms") else ">="
        parts.append(f"{name} {check['value']:.3g} {sign} {check['goal']:g} {'pass' if check['pass'] else 'FAIL'}")
    print("    goals: " + "; ".join(parts), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="16,18,20,22", help="log2 of the point counts")
    parser.add_argument("--channels", default="32,64,128,256")
    parser.add_argument(
        "--max-elements",
        type=int,
        default=1 << 28,
        help="skip sizes with more points x channels (memory of the reference path)",
    )
    parser.add_argument(
        "--ops",
        default="modulate,dense2d,triplane,hash",
        help=f"modulate (gamma/beta given) and grid_modulate over each grid type ({', '.join(GRIDS)})",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="also time the grid ops under torch.use_deterministic_algorithms(True) (backend auto)",
    )
    parser.add_argument(
        "--goals",
        action="store_true",
        help="instead of the sweep, only the goal rows of issue 28 (deterministic mode included), pass/fail",
    )
    parser.add_argument(
        "--profile",
        metavar="OP,LOG2N,C,MOD",
        type=profile_case,
        help="instead of the sweep, print the CUDA kernels of one case, e.g. dense2d,20,128,scalar",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run, PyTorch path only")
    parser.add_argument("--tiny", action="store_true", help=f"goal rows at 2^{TINY_LOG2N} x {TINY_CHANNELS}")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results, rewritten after each row (default: benchmarks/results/kernels/modulate[_goals]_<gpu>.json)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CamfieldsError("bench_modulate needs a CUDA GPU (--device cpu for a dry run)")
    if args.profile:
        profile(*args.profile)
        return
    kind = "modulate_goals" if args.goals else "modulate"
    args.out = args.out or default_out("kernels", f"{kind}_{device_tag(torch.device(args.device))}.json")
    device = device_name(torch.device(args.device))
    copy_gbs = copy_bandwidth_gbs(args.device)
    report = {
        "name": "bench_modulate",
        "description": "fused (grid) modulation, layer norm + ReLU, fp32, vs the PyTorch reference",
        "device": device,
        "copy_bandwidth_gbs": copy_gbs,
        "rows": [],
    }
    print(f"{device}; device copy bandwidth {copy_gbs:.0f} GB/s; layer norm + ReLU, fp32")
    write_json(Path(args.out), report)
    print(
        f"{'op':>9} {'points':>8} {'C':>4} {'mod':>8} | {'torch f/fb ms':>15} | {'cuda f/fb ms':>15} | "
        f"{'speedup fb':>10} | {'cuda GB/s':>9} {'% copy':>6} | {'peak MB t/c':>13}"
    )
    if args.goals:
        log_n, c = (TINY_LOG2N, TINY_CHANNELS) if args.tiny else (GOAL_LOG2N, GOAL_CHANNELS)
        cases = [(op, log_n, c, per_channel) for op, per_channel in GOALS]
    else:
        cases = [
            (op, log_n, c, per_channel)
            for op in args.ops.split(",")
            for log_n in map(int, args.points.split(","))
            for c in map(int, args.channels.split(","))
            for per_channel in (False, True)
            if (1 << log_n) * c <= args.max_elements
        ]
    for op, log_n, c, per_channel in cases:
        row = measure_row(op, log_n, c, per_channel, args.deterministic or args.goals, copy_gbs, args.device)
        if args.goals:
            row["goals"] = goal_checks(row)
        report["rows"].append(row)
        write_json(Path(args.out), report)
        t, k = row["torch"], row["cuda"]
        print(
            f"{op:>9} {'2^' + str(log_n):>8} {c:>4} {'channel' if per_channel else 'scalar':>8} | "
            f"{t['forward_ms']:6.2f}/{t['forward_backward_ms']:7.2f} | "
            f"{k['forward_ms']:6.2f}/{k['forward_backward_ms']:7.2f} | {row['speedup_forward_backward']:9.2f}x | "
            f"{k['forward_backward_gbs']:9.0f} {100 * row['cuda_fraction_of_copy_bandwidth']:5.0f}% | "
            f"{fmt_mb(t['peak_extra_mb'])}/{fmt_mb(k['peak_extra_mb'])}",
            flush=True,
        )
        if "deterministic" in row:
            print(
                f"    deterministic fb {row['deterministic']['forward_backward_ms']:.2f} ms "
                f"({row['deterministic_cost']:.2f}x the default fused path)",
                flush=True,
            )
        if args.goals:
            print_goals(row["goals"])
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(run(main))
