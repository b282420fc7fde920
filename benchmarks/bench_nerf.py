#!/usr/bin/env python
"""NeRF benchmark: plain and CAM variants of each model side by side on one Blender scene.

Same images, resolution, steps, rays per step and seed for every model; see scene_bench.py.

    python benchmarks/bench_nerf.py        # CPU, 100x100: writes benchmarks/results/nerf/lego/cpu.json
    python benchmarks/bench_nerf.py --config nerf/lego --downscale 1 --eval-split val \
        --out benchmarks/results/nerf/lego/400x400_<gpu>.json                                   # GPU, 400x400
"""

from __future__ import annotations

import sys
from pathlib import Path

from scene_bench import run_benchmark

from camfields.cli import run
from camfields.tasks.nerf import PRESETS, fit_nerf, resolve_config

SCENE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nerf" / "lego"
#: each CAM variant and the plain model it is compared with
BASELINES = {"vanilla_cam": "vanilla", "vanilla_dircam": "vanilla", "ngp_cam": "ngp"}


def main(argv: list[str] | None = None) -> None:
    run_benchmark(argv, __doc__, PRESETS, resolve_config, fit_nerf, BASELINES, SCENE, "nerf/lego_cpu", "nerf")


if __name__ == "__main__":
    sys.exit(run(main))
