"""scripts/gpu_run.sh in its CPU dry run (DRY_RUN=1): every step runs and leaves its result file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, SHARED_DATA
from test_benchmarks import small_lego  # also puts benchmarks/ on the path


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_dry_run_runs_every_step_and_writes_each_result_file(tmp_path):
    import bench_modulate

    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("LEGO", "STEPS", "DEADLINE", "GPU_TESTS")}
    env |= {"DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable, "CAMFIELDS_CACHE": str(tmp_path / "cache")}
    lego = SHARED_DATA / "nerf" / "lego"
    has_lego = (lego / "transforms_train.json").exists()
    if has_lego:
        env["LEGO"] = str(small_lego(lego, tmp_path / "lego", views=2, val_views=1))
    done = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    summary = (out / "summary.txt").read_text()
    assert done.stdout.endswith(summary)  # printed last
    for step in ("build", "tests", "kernels", "steps", "nerf" if has_lego else None):
        if step:
            assert f"\n{step}: exit 0 after " in summary, summary
    assert "dry run, no build; sources: cuda/bindings.cpp" in (out / "build.log").read_text()
    assert "tests/ops/test_cuda_ops.py::" in (out / "gpu_tests.log").read_text()

    goals = json.loads((out / "kernels" / "modulate_goals_cpu.json").read_text())
    assert [(row["op"], row["per_channel"]) for row in goals["rows"]] == list(bench_modulate.GOALS)
    for row in goals["rows"]:
        assert row["points"] == 1 << bench_modulate.TINY_LOG2N and row["deterministic_cost"] > 0
        assert all(isinstance(check["pass"], bool) for check in row["goals"].values())

    steps = json.loads((out / "kernels" / "end_to_end_cpu.json").read_text())
    timed = [row["row"] for row in steps["rows"]]
    assert timed == (["image", "vanilla_cam", "ngp"] if has_lego else ["image"])
    assert all(row["ratio"] > 0 for row in steps["rows"])

    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"summary.txt", "build.log", "gpu_tests.log", "bench.log", "kernels/modulate_goals_cpu.json"}
    expected |= {"kernels/end_to_end_cpu.json"} | ({"nerf/lego/ngp_ngp_cam_400x400_cpu.json"} if has_lego else set())
    assert files == expected and len(files) <= 8  # what the device tool sends back
    if has_lego:
        nerf = json.loads((out / "nerf" / "lego" / "ngp_ngp_cam_400x400_cpu.json").read_text())
        assert set(nerf["results"]) == {"ngp", "ngp_cam"}
        assert all(r["steps"] == 3 and r["psnr"] > 0 for r in nerf["results"].values())
    else:
        assert "nerf: skipped, no LEGO folder given" in summary
