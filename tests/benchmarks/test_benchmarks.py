"""The shared side-by-side benchmark driver (benchmarks/scene_bench.py) without fitting anything."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO, shared_data

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
            ["--steps", "3", "--seconds", "4", "--out", "x.json"], "d", {}, None, None, {}, REPO, "c", "nerf"
        )
    assert "not allowed with" in capsys.readouterr().err


def test_default_result_paths_follow_the_layout_and_never_replace_a_result(tmp_path, monkeypatch):
    import torch
    from results_layout import RESULTS, default_out, device_tag

    from camfields.errors import CamfieldsError

    assert RESULTS == REPO / "benchmarks" / "results"
    assert device_tag(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert device_tag(torch.device("cuda")) == "h100_80gb_hbm3"
    monkeypatch.setattr("results_layout.RESULTS", tmp_path)
    assert default_out("image", "kodak", "cpu.json") == tmp_path / "image" / "kodak" / "cpu.json"
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "end_to_end_cpu.json").write_text("{}")
    with pytest.raises(CamfieldsError, match=r"end_to_end_cpu.json already holds a result; pass --out"):
        default_out("kernels", "end_to_end_cpu.json")


def test_every_committed_result_sits_in_the_layout_and_every_cited_one_exists():
    files = [p for p in (REPO / "benchmarks" / "results").rglob("*") if p.is_file()]
    tasks = {"image", "nerf", "dynamic", "video", "kernels", "distributed"}
    for path in files:
        parts = path.relative_to(REPO / "benchmarks" / "results").parts
        assert parts[0] in tasks and len(parts) == (2 if parts[0] in ("kernels", "distributed") else 3), path
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    cited = set()
    for doc in docs:
        for link in re.findall(r"\]\(([^)#\s]+)", doc.read_text()):
            if "benchmarks/results/" in link:
                cited.add((doc.parent / link).resolve())
    missing = sorted(str(c) for c in cited if not c.exists())
    assert cited and not missing, missing


def test_profile_case_parses_one_case_and_refuses_anything_else():
    import bench_modulate

    assert bench_modulate.profile_case("dense2d,20,128,scalar") == ("dense2d", 1 << 20, 128, False)
    assert bench_modulate.profile_case("hash,16,33,channel") == ("hash", 1 << 16, 33, True)
    for bad in ("dense2d,x", "cube,20,128,scalar", "dense2d,20,128,both", "dense2d,-1,128,scalar"):
        with pytest.raises(argparse.ArgumentTypeError, match="OP,LOG2N,C"):
            bench_modulate.profile_case(bad)


@pytest.mark.slow
def test_bench_video_runs_each_model_seed_and_quantizer_and_reports_gains(tmp_path):
    import json

    import bench_video
    import numpy as np
    from test_video import SMALL, synthetic_clip, write_frames_folder

    from camfields import CamfieldsError
    from camfields.codec.bitstream import read_bitstream

    clip = write_frames_folder(tmp_path / "clip", synthetic_clip(6))
    config = tmp_path / "tiny.toml"
    config.write_text("epochs = 2\n[generator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()))
    argv = ["--video", str(clip), "--config", str(config), "--models", "nerv:8000,cam:8000", "--seeds", "0,1"]
    argv += ["--device", "cpu", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "bench.json")]
    bench_video.main([*argv, "--jobs", "2"])
    report = json.loads((tmp_path / "bench.json").read_text())
    results = report["results"]
    assert len(results) == 8  # 2 models x 2 seeds x 2 quantizers
    psnr = {(r["model"], r["seed"], r["quant_steps"]): r["psnr"] for r in results}
    for quant in ("tensor", "channel"):
        per_seed = report["psnr_gain_vs_baseline"][quant]["cam"]["per_seed"]
        for seed in (0, 1):
            assert per_seed[str(seed)] == psnr[("cam", seed, quant)] - psnr[("nerv", seed, quant)]
    for quant, one_step in (("tensor", True), ("channel", False)):
        stream = read_bitstream(tmp_path / "work" / f"cam_8000_8bit_{quant}_s0" / "video.camf")
        assert all(len(t.steps) == 1 for t in stream.tensors) == one_step
    assert len({r["psnr"] for r in results}) > 4  # seeds and quantizers give different fits
    # a rerun resumes the finished fits: nothing is refitted, the numbers are the same
    bench_video.main(argv)
    again = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert all(r["resumed_from"] is None for r in results) and all(r["resumed_from"] == 12 for r in again)
    assert np.allclose([r["psnr"] for r in again], [r["psnr"] for r in results])
    # --prune reaches the fits, which land in their own folders
    argv[argv.index("--seeds") + 1] = "0"
    bench_video.main([*argv, "--prune", "0.5", "--epochs", "5", "--quant-steps", "tensor"])
    for model in ("nerv", "cam"):
        stream = read_bitstream(tmp_path / "work" / f"{model}_8000_8bit_prune0.5_tensor_s0" / "video.camf")
        assert np.mean(next(t for t in stream.tensors if t.name == "convs.0.weight").values == 0) >= 0.5
    with pytest.raises(CamfieldsError, match=r"prune must be in \[0, 1\)"):
        bench_video.main([*argv, "--prune", "1.5"])
    # so does --qat-dampening, 0 switching it off
    bench_video.main([*argv, "--qat-dampening", "0", "--epochs", "5", "--quant-steps", "tensor"])
    recorded = json.loads((tmp_path / "work" / "cam_8000_8bit_damp0_tensor_s0" / "config.json").read_text())
    assert recorded["compression"]["qat_dampening"] == 0 and recorded["epochs"] == 5
    # and --rate-weight, in a folder of its own
    bench_video.main([*argv, "--rate-weight", "0.5", "--epochs", "5", "--quant-steps", "tensor"])
    recorded = json.loads((tmp_path / "work" / "cam_8000_8bit_rate0.5_tensor_s0" / "config.json").read_text())
    assert recorded["compression"]["rate_weight"] == 0.5


def test_bench_video_model_list_needs_targets_and_known_names():
    import bench_video

    from camfields import CamfieldsError

    assert bench_video.model_targets("ffnerv:51500, ffnerv_cam:50000") == [("ffnerv", 51500), ("ffnerv_cam", 50000)]
    for bad, message in (
        ("ffnerv,ffnerv_cam", "model:target"),
        ("ffnerv:1,nerve:2", "unknown --models name"),
        ("ffnerv:100", "baseline and at least one"),
    ):
        with pytest.raises(CamfieldsError, match=message):
            bench_video.model_targets(bad)


def fake_fit(folder, model, seed, params, bpp, psnr, rate_weight=0.0, psnr_float=None, qat_fraction=0.2, **settings):
    """A fit folder as fit_video.py leaves it (the real config format), with chosen metrics and settings."""
    from camfields.config import to_dict
    from camfields.tasks.video import resolve_config
    from camfields.training.checkpoint import write_json

    compression = {"rate_weight": rate_weight, "qat_fraction": qat_fraction}
    overrides = {"train": {"seed": seed}, "compression": compression, **settings}
    write_json(folder / "config.json", to_dict(resolve_config(model, overrides=overrides)))
    psnr_float = psnr - 1 if psnr_float is None else psnr_float
    metrics = {"params": params, "bytes": round(bpp * 1000), "bpp": bpp, "psnr": psnr, "psnr_float": psnr_float}
    metrics |= {"psnr_nearest_rounding": psnr - 0.5, "ms_ssim": 0.9, "seconds": 1.0, "device": "CPU: test"}
    write_json(folder / "metrics.json", metrics)
    return str(folder)


def test_collect_video_fits_compares_with_the_reference_at_equal_params_and_rate(tmp_path):
    import json
    import math

    import collect_video_fits

    from camfields import CamfieldsError
    from camfields.training.checkpoint import write_json

    fits = [
        fake_fit(tmp_path / "p1", "ffnerv", 0, 1000, 0.01, 24.0),
        fake_fit(tmp_path / "p2", "ffnerv", 0, 2000, 0.04, 26.0),
        fake_fit(tmp_path / "c", "ffnerv_cam", 0, 1250, 0.02, 25.5),
        fake_fit(tmp_path / "c_big", "ffnerv_cam", 0, 3000, 0.05, 27.0),
    ]
    rd = {"codecs": [{"name": "camfields-x", "results": {"bpp": [1], "psnr": [1]}}]}
    rd["codecs"].append({"name": "x264", "results": {"bpp": [0.005, 0.02], "psnr": [20.0, 23.0]}})
    write_json(tmp_path / "rd.json", rd)
    out = tmp_path / "fits.json"
    collect_video_fits.main([*fits, "--reference", "ffnerv", "--rd", str(tmp_path / "rd.json"), "--out", str(out)])
    report = json.loads(out.read_text())
    by_fit = {Path(r["fit"]).name: r for r in report["results"]}
    cam = by_fit["c"]
    assert cam["cam_grid_nodes"] == 30 and by_fit["p1"]["cam_grid_nodes"] == 0
    assert math.isclose(cam["ffnerv_psnr_at_same_params"], 24.5)  # a quarter of the way from 1000 to 2000
    assert math.isclose(cam["psnr_minus_ffnerv_at_same_params"], 1.0)
    assert math.isclose(cam["ffnerv_psnr_at_same_bpp"], 25.0)  # halfway in log-rate from 0.01 to 0.04
    assert math.isclose(cam["psnr_minus_ffnerv_at_same_bpp"], 0.5)
    assert by_fit["c_big"]["psnr_minus_ffnerv_at_same_params"] is None  # outside the reference's sizes
    assert math.isclose(cam["baseline_psnr_at_same_bpp"]["x264"], 23.0)
    assert by_fit["c_big"]["baseline_psnr_at_same_bpp"] == {"x264": None}
    assert report["devices"] == ["CPU: test"]
    # an unfinished fit, a folder that is no fit, a reference without fits of that seed: one clear error each
    (tmp_path / "c" / "metrics.json").unlink()
    with pytest.raises(CamfieldsError, match="has not finished"):
        collect_video_fits.main([*fits, "--out", str(out)])
    with pytest.raises(CamfieldsError, match="folder of a video fit"):
        collect_video_fits.main([str(tmp_path), "--out", str(out)])
    other_seed = fake_fit(tmp_path / "c_s1", "ffnerv_cam", 1, 1250, 0.02, 25.5)
    with pytest.raises(CamfieldsError, match="no ffnerv fit with seed 1"):
        collect_video_fits.main([fits[0], other_seed, "--reference", "ffnerv", "--out", str(out)])
    # a rate_weight makes a variant of its own, which can be compared with its model without one
    rated = fake_fit(tmp_path / "c_rate", "ffnerv_cam", 0, 2000, 0.03, 26.5, rate_weight=0.1)
    small_cam = fake_fit(tmp_path / "c2", "ffnerv_cam", 0, 1250, 0.02, 25.5)
    collect_video_fits.main([small_cam, fits[3], rated, "--reference", "ffnerv_cam", "--out", str(out)])
    (result,) = [r for r in json.loads(out.read_text())["results"] if r["variant"] == "ffnerv_cam+rate0.1"]
    assert math.isclose(result["ffnerv_cam_psnr_at_same_params"], 25.5 + 1.5 * 750 / 1750)
    assert math.isclose(result["ffnerv_cam_psnr_at_same_bpp"], 25.5 + 1.5 * math.log(1.5) / math.log(2.5))
    with pytest.raises(CamfieldsError, match=r"ffnerv_cam\+rate0.1"):
        collect_video_fits.main([rated, "--reference", "ffnerv", "--out", str(out)])


def test_collect_video_fits_names_variants_by_their_settings_and_compares_any_psnr(tmp_path):
    import json
    import math

    import collect_video_fits

    plain = [
        fake_fit(tmp_path / "p1", "ffnerv", 0, 1000, 0.01, 24.0, psnr_float=25.0, qat_fraction=0.0),
        fake_fit(tmp_path / "p2", "ffnerv", 0, 2000, 0.04, 26.0, psnr_float=28.0, qat_fraction=0.0),
    ]
    nodes = fake_fit(
        tmp_path / "n", "ffnerv_cam", 0, 1500, 0.02, 25.0, psnr_float=27.5, qat_fraction=0.0, generator={"time_grid": 2}
    )
    unnormed = fake_fit(tmp_path / "u", "ffnerv_cam", 0, 1500, 0.02, 25.0, generator={"cam_norm": "none"})
    default = fake_fit(tmp_path / "d", "ffnerv_cam", 0, 1500, 0.02, 25.0, generator={"time_grid": 30})
    out = tmp_path / "fits.json"
    collect_video_fits.main([*plain, nodes, "--reference", "ffnerv+qat0", "--metric", "psnr_float", "--out", str(out)])
    report = json.loads(out.read_text())
    by_fit = {Path(r["fit"]).name: r for r in report["results"]}
    assert report["metric"] == "psnr_float"
    assert by_fit["n"]["variant"] == "ffnerv_cam+nodes2+qat0" and by_fit["p1"]["variant"] == "ffnerv+qat0"
    assert math.isclose(by_fit["n"]["ffnerv+qat0_psnr_float_at_same_params"], 26.5)  # halfway from 25 to 28
    assert math.isclose(by_fit["n"]["psnr_float_minus_ffnerv+qat0_at_same_params"], 1.0)
    collect_video_fits.main([unnormed, default, "--out", str(out)])
    variants = {Path(r["fit"]).name: r["variant"] for r in json.loads(out.read_text())["results"]}
    assert variants == {"u": "ffnerv_cam+norm_none", "d": "ffnerv_cam"}  # the preset's own settings add nothing
    with pytest.raises(SystemExit):  # argparse names the choices
        collect_video_fits.main([default, "--metric", "ssim", "--out", str(out)])


def test_modulate_goal_checks_compare_each_measurement_with_its_goal():
    import bench_modulate

    assert set(bench_modulate.GOALS) == {("dense2d", False), ("dense2d", True), ("triplane", False), ("hash16", False)}
    grid = bench_modulate.GRIDS["hash16"][1](2)
    assert (grid.levels, grid.table_size, grid.reduce) == (16, 1 << 19, "sum")
    row = {
        "op": "dense2d",
        "per_channel": True,
        "speedup_forward_backward": 6.0,
        "cuda_fraction_of_copy_bandwidth": 0.4,
        "deterministic_cost": 1.2,
        "cuda": {"forward_backward_ms": 3.5},
    }
    checks = bench_modulate.goal_checks(row)
    assert {name: c["pass"] for name, c in checks.items()} == {
        "speedup_forward_backward": True,
        "copy_bandwidth_share": False,
        "deterministic_cost": True,
        "cuda_forward_backward_ms": False,
    }
    assert checks["speedup_forward_backward"]["goal"] == 5.0 and checks["cuda_forward_backward_ms"]["goal"] == 3.0
    hash_checks = bench_modulate.goal_checks({**row, "op": "hash16", "per_channel": False})
    assert "cuda_forward_backward_ms" not in hash_checks and hash_checks["speedup_forward_backward"]["goal"] == 3.0


def small_lego(source: Path, target: Path, views: int = 3, val_views: int = 0) -> Path:
    """A copy of a Blender scene's first ``views`` training (and ``val_views`` val) views, linking its images."""
    for split, count in (("train", views), ("val", val_views)):
        if count == 0:
            continue
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:count]
        (target / split).mkdir(parents=True)
        for frame in meta["frames"]:
            name = Path(frame["file_path"]).name + ".png"
            (target / split / name).symlink_to(source / split / name)
        (target / f"transforms_{split}.json").write_text(json.dumps(meta))
    return target


def run_end_to_end(tmp_path: Path, *args: str) -> dict:
    import bench_end_to_end

    out = tmp_path / "end_to_end.json"
    bench_end_to_end.main(["--device", "cpu", "--tiny", "--warmup", "1", "--seconds", "0.05", "--out", str(out), *args])
    return json.loads(out.read_text())


def check_variants(row: dict) -> None:
    torch_rate, fused_rate = (row["variants"][v]["steps_per_second"] for v in ("torch", "fused"))
    for variant in row["variants"].values():
        assert variant["steps"] >= 3 and variant["seconds"] > 0 and variant["peak_memory_mb"] is None
        assert math.isfinite(variant["steps_per_second"]) and variant["steps_per_second"] > 0
        assert variant["steps_per_second"] == pytest.approx(variant["steps"] / variant["seconds"])
    assert row["ratio"] == pytest.approx(fused_rate / torch_rate)
    assert row["meets_goal"] is None  # no goal on the CPU


def test_end_to_end_benchmark_times_both_backends_of_the_image_step_and_skips_a_missing_scene(tmp_path):
    report = run_end_to_end(tmp_path, "--rows", "image,ngp", "--data", str(tmp_path / "no_scene"))
    assert report["device"].startswith("CPU") and report["goal_speedup"] == 2.0
    (row,) = report["rows"]
    assert (row["row"], row["size"], row["batch"]) == ("image", "32x32", 1024)
    check_variants(row)
    assert report["skipped"] == [{"row": "ngp", "reason": f"no Blender scene at {tmp_path / 'no_scene'}"}]


def test_end_to_end_benchmark_times_the_nerf_presets_on_lego(tmp_path):
    scene = small_lego(shared_data("nerf/lego"), tmp_path / "lego")
    report = run_end_to_end(tmp_path, "--rows", "vanilla_cam,ngp", "--data", str(scene))
    assert [r["row"] for r in report["rows"]] == ["vanilla_cam", "ngp"] and report["skipped"] == []
    for row in report["rows"]:
        assert (row["size"], row["views"], row["batch"]) == ("50x50", 3, 128)
        check_variants(row)


def test_end_to_end_variants_switch_the_backend_variable_and_restore_it(monkeypatch):
    import os

    import bench_end_to_end

    monkeypatch.setenv("CAMFIELDS_BACKEND", "before")
    with bench_end_to_end.backend_variant("torch"):
        assert os.environ["CAMFIELDS_BACKEND"] == "torch"
    with bench_end_to_end.backend_variant("fused"):
        assert "CAMFIELDS_BACKEND" not in os.environ
    assert os.environ["CAMFIELDS_BACKEND"] == "before"


def test_bench_grid_backward_cpu_runs_old_and_new_on_every_case(tmp_path):
    import bench_grid_backward_cpu

    argv = ["--log2-points", "6", "--channels", "6", "--repeats", "1", "--out", str(tmp_path / "grid.json")]
    report = bench_grid_backward_cpu.main(argv)
    cases = [(r["grid"], r["modulation"]) for r in report["results"]]
    assert cases == [(grid, mod) for grid in ("dense2d", "triplane", "hash") for mod in ("scalar", "channel")]
    assert max(r["max_relative_gradient_difference"] for r in report["results"]) < 1e-5
    assert json.loads((tmp_path / "grid.json").read_text()) == report


@pytest.mark.slow
def test_the_scene_benchmark_reports_each_models_decoded_file(tmp_path, capsys):
    import json

    from test_nerf import write_blender_scene

    from camfields.tasks.nerf import PRESETS, fit_nerf, resolve_config

    write_blender_scene(tmp_path / "sphere")
    (tmp_path / "tiny.toml").write_text(
        'downscale = 1\naabb = [-1.0, -1, -1, 1, 1, 1]\nturntable_frames = 0\n'
        "[sampler]\nsteps_per_diagonal = 32\ngrid_resolution = 8\nwarmup = 4\nupdate_every = 4\n"
        "[train]\nsteps = 6\nbatch_size = 128\n"
    )
    argv = ["--data", str(tmp_path / "sphere"), "--config", str(tmp_path / "tiny.toml"), "--models", "ngp,ngp_cam"]
    argv += ["--compress", "6", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "r.json")]
    scene_bench.run_benchmark(argv, "d", PRESETS, resolve_config, fit_nerf, {"ngp_cam": "ngp"}, REPO, "c", "nerf")
    report = json.loads((tmp_path / "r.json").read_text())
    for model in ("ngp", "ngp_cam"):
        row, file = report["results"][model], report["scene_files"][model]
        assert file["bytes"] == (tmp_path / "work" / model / "scene.camf").stat().st_size and file["bits"] == 6
        assert file["psnr_drop"] == pytest.approx(row["psnr"] - row["psnr_6bit"])
    assert "psnr_6bit" in capsys.readouterr().out
