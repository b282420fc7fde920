#!/usr/bin/env python
"""Dynamic-scene benchmark: T-NeRF, T-NeRF + CAM and the space-time models side by side.

Same frames, steps, rays per step and seed for every model; see scene_bench.py.

    python benchmarks/bench_dynamic.py   # CPU, 100x100

Without --out it writes benchmarks/results/dynamic/tiny_dnerf_lego_trainval/cpu.json (data name, device).
"""

from __future__ import annotations

import sys
from pathlib import Path

from scene_bench import run_benchmark

from camfields.cli import run
from camfields.tasks.dynamic import PRESETS, fit_dynamic, resolve_config

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dynamic" / "tiny_dnerf_lego_trainval.npz"
#: each CAM variant and the plain model it is compared with
BASELINES = {"tnerf_cam": "tnerf"}


def main(argv: list[str] | None = None) -> None:
    run_benchmark(
        argv, __doc__, PRESETS, resolve_config, fit_dynamic, BASELINES, DATA, "dynamic/tiny_lego_cpu", "dynamic"
    )


if __name__ == "__main__":
    sys.exit(run(main))
