"""scripts/gpu_run.sh in its CPU dry run (DRY_RUN=1): every step runs and leaves its result file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA
from PIL import Image
from test_benchmarks import small_lego  # also puts benchmarks/ on the path

from camfields.codec import image_baselines


def smooth_images(folder: Path, count: int = 2, width: int = 256, height: int = 192) -> Path:
    """``count`` smooth RGB PNGs with a little noise (``width`` x ``height``) in ``folder``: the
    stand-in for full-size Kodak images, which the dry run downscales 8x."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / 64.0
    for i in range(count):
        rgb = np.stack([np.sin(x * (i + 1) + y), np.cos(2 * y - x), np.sin(x * y / 4 + i)], axis=-1) * 0.4 + 0.5
        rgb += rng.normal(0, 0.03, rgb.shape)
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"k{i}.png")
    return folder


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_dry_run_runs_every_step_and_writes_each_result_file(tmp_path):
    import bench_modulate

    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("LEGO", "KODAK", "STEPS", "DEADLINE", "GPU_TESTS")}
    env |= {"DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable, "CAMFIELDS_CACHE": str(tmp_path / "cache")}
    kodak = smooth_images(tmp_path / "kodak")
    env["KODAK"] = str(kodak)
    lego = SHARED_DATA / "nerf" / "lego"
    has_lego = (lego / "transforms_train.json").exists()
    if has_lego:
        env["LEGO"] = str(small_lego(lego, tmp_path / "lego", views=2, val_views=1))
    done = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    summary = (out / "summary.txt").read_text()
    assert done.stdout.endswith(summary)  # printed last
    for step in ("build", "tests", "kernels", "steps", "nerf" if has_lego else None, "kodak"):
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
    expected |= {"kernels/end_to_end_cpu.json", "image/kodak/rd_pyramid_cam_6bit_768x512_cpu.json"}
    expected |= {"nerf/lego/ngp_ngp_cam_2e14_400x400_cpu.json"} if has_lego else set()
    assert files == expected and len(files) <= 8  # what the device tool sends back
    if has_lego:  # each fit also evaluated from its 8-bit scene file
        nerf = json.loads((out / "nerf" / "lego" / "ngp_ngp_cam_2e14_400x400_cpu.json").read_text())
        assert set(nerf["results"]) == set(nerf["scene_files"]) == {"ngp", "ngp_cam"}
        for model, row in nerf["results"].items():
            scene_file = nerf["scene_files"][model]
            assert row["steps"] == 3 and row["psnr"] > 0 and row["psnr_8bit"] > 0
            assert scene_file["bits"] == 8 and row["file_bytes"] == scene_file["bytes"] > 0
    else:
        assert "nerf: skipped, no LEGO folder given" in summary

    # kodak: a round on the first image, then one on both, each leaving its rd.json
    bench = (out / "bench.log").read_text()
    assert f"kodak: rd.json of {kodak / 'k0.png'} after " in bench
    assert f"kodak: rd.json of {kodak} after " in bench
    rd = json.loads((out / "image" / "kodak" / "rd_pyramid_cam_6bit_768x512_cpu.json").read_text())
    assert rd["count"] == 2 and rd["downscale"] == 8 and rd["sizes"] == {"k0": [32, 24], "k1": [32, 24]}
    curves = {c["name"]: c for c in rd["codecs"]}
    baselines = {name for name in image_baselines.CODECS if image_baselines.available(name)}
    assert set(curves) == {"camfields-pyramid_cam-6bit", "camfields-pyramid-6bit"} | baselines
    for name in ("camfields-pyramid_cam-6bit", "camfields-pyramid-6bit"):
        points = curves[name]["points"]
        assert sorted(p["rate_weight"] for p in points) == [0.01, 0.1]
        assert all(p["params"] > 0 and set(p["images"]) == {"k0", "k1"} for p in points)
    assert rd["steps"] == 3 and "camfields-pyramid_cam-6bit vs camfields-pyramid-6bit" in rd["bd"]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_kodak_step_without_images_says_so_and_runs_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for kodak, line in ((None, "kodak: skipped, no KODAK folder given"), (empty, "kodak: exit 2 after ")):
        out = tmp_path / f"out_{kodak is None}"
        env = {k: v for k, v in os.environ.items() if k not in ("LEGO", "KODAK", "DEADLINE", "GPU_TESTS")}
        env |= {"DRY_RUN": "1", "STEPS": "kodak", "OUT": str(out), "PYTHON": sys.executable}
        env |= {"KODAK": str(kodak)} if kodak else {}
        done = subprocess.run(["bash", "scripts/gpu_run.sh"], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        summary = (out / "summary.txt").read_text()
        assert f"\n{line}" in summary, summary
        assert not (out / "image").exists()
    assert f"kodak: {empty} holds no .png images" in summary
