"""The shared side-by-side benchmark driver (benchmarks/scene_bench.py) without fitting anything."""

from __future__ import annotations

import argparse
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import scene_bench  # noqa: E402


def test_seconds_budget_sets_the_steps_from_a_probe_fit(tmp_path):
    calls = []

    def resolve(model, config, overrides):
        return {"model": model, "overrides": overrides}

    def fit(data, cfg, out, device, resume, progress):
        calls.append((cfg, out))
        return {"seconds": 6.0}  # the probe's 300 steps took 6 s

    args = argparse.Namespace(seconds=120.0, config="nerf/lego", data="scene")
    steps = scene_bench.steps_for_seconds(args, "ngp", resolve, fit, {"downscale": 2}, tmp_path, "cpu")
    assert steps == 300 * 120 // 6
    ((cfg, out),) = calls
    assert cfg["overrides"] == {"downscale": 2, "train": {"steps": 300}, "eval_views": 1}
    assert out == tmp_path / "ngp_probe"


def test_a_budget_shorter_than_the_probe_still_trains_the_probe_length(tmp_path):
    args = argparse.Namespace(seconds=1.0, config="c", data="d")
    slow_probe = lambda *a, **k: {"seconds": 30.0}  # noqa: E731
    steps = scene_bench.steps_for_seconds(args, "m", lambda *a: {}, slow_probe, {}, tmp_path, "cpu")
    assert steps == scene_bench.PROBE_STEPS


def test_steps_and_seconds_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        scene_bench.run_benchmark(
            ["--steps", "3", "--seconds", "4", "--out", "x.json"], "d", {}, None, None, {}, REPO, "c"
        )
    assert "not allowed with" in capsys.readouterr().err


def test_profile_case_parses_one_case_and_refuses_anything_else():
    import bench_modulate

    assert bench_modulate.profile_case("dense2d,20,128,scalar") == ("dense2d", 1 << 20, 128, False)
    assert bench_modulate.profile_case("hash,16,33,channel") == ("hash", 1 << 16, 33, True)
    for bad in ("dense2d,x", "cube,20,128,scalar", "dense2d,20,128,both", "dense2d,-1,128,scalar"):
        with pytest.raises(argparse.ArgumentTypeError, match="OP,LOG2N,C"):
            bench_modulate.profile_case(bad)
