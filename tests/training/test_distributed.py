"""Fitting on several processes: batch sharding, and real 2-process gloo runs through torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO
from test_nerf import write_blender_scene

from camfields import cli
from camfields.distributed import Shard, init, map_gathered, run_on_main
from camfields.errors import CamfieldsError
from camfields.io.blender import load_blender
from camfields.render.model import NeRFModel, build_radiance_field
from camfields.tasks.nerf import resolve_config
from camfields.tasks.radiance import evaluate_views

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

NERF_CONFIG = """
model = "ngp_cam"
downscale = 1
aabb = [-1.0, -1, -1, 1, 1, 1]
turntable_frames = 4
[field.trunk.encoding.hash]
log2_table_size = 12
levels = 8
[sampler]
steps_per_diagonal = 64
grid_resolution = 16
warmup = 20
update_every = 8
[train]
batch_size = 256
checkpoint_every = 10
lr = 1e-2
"""


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shard_gradients_average_to_the_gradient_of_the_global_mean(world):
    weights = torch.randn(3, requires_grad=True)
    batch = torch.randn(7, 3)  # 7 rows: unequal slices for 2 and 3 ranks
    (torch.mean((batch * weights) ** 2)).backward()
    expected, weights.grad = weights.grad.clone(), None
    grads = []
    for rank in range(world):
        shard = Shard(rank, world)
        shard.mean((shard.take(batch) * weights) ** 2, len(batch)).backward()
        grads.append(weights.grad.clone())
        weights.grad = None
    torch.testing.assert_close(torch.stack(grads).mean(0), expected)  # what DDP's averaging computes


def test_shard_slices_and_items_cover_everything_once():
    batch = torch.arange(10)
    for world in (1, 2, 3, 4):
        slices = [Shard(rank, world).take(batch) for rank in range(world)]
        assert torch.equal(torch.cat(slices), batch)
        assert all(torch.equal(batch[Shard(r, world).rows(10)], slices[r]) for r in range(world))
        items = sorted(x for rank in range(world) for x in Shard(rank, world).mine(list(range(10))))
        assert items == list(range(10))


def test_bad_launch_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun; both checks come before joining
    with pytest.raises(CamfieldsError, match="every rank on one GPU"):
        init("cuda:1")
    for bad in ("soon", "-5"):
        monkeypatch.setenv("CAMFIELDS_DIST_TIMEOUT", bad)
        with pytest.raises(CamfieldsError, match="CAMFIELDS_DIST_TIMEOUT"):
            init("cpu")


def test_helpers_work_in_one_process_without_a_process_group():
    assert [r for _, r in map_gathered([1, 2, 3], lambda x: x * 10)] == [10, 20, 30]
    assert run_on_main(lambda: "done") == "done"


def torchrun(nproc: int, script: str, *args: str) -> subprocess.Popen:
    """Start ``scripts/<script>`` under torchrun with ``nproc`` CPU processes (gloo)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "CAMFIELDS_DIST_TIMEOUT": "120"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += [str(REPO / "scripts" / script), "--device", "cpu", "--quiet", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out, err


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def write_images(folder: Path, count: int) -> None:
    folder.mkdir()
    y, x = np.mgrid[0:24, 0:32] / 24.0
    for k in range(count):
        image = np.stack([np.sin(x * (3 + k)), np.cos(y * (2 + k)), np.sin((x + y) * 4)], -1) * 0.5 + 0.5
        iio.imwrite(folder / f"im{k}.png", (image * 255).astype(np.uint8))


@pytest.mark.slow
def test_image_folder_is_spread_over_two_ranks_and_gathered_on_rank_0(tmp_path):
    write_images(tmp_path / "images", 3)
    out = tmp_path / "run"
    args = ("--image", str(tmp_path / "images"), "--out", str(out), "--steps", "30")
    stdout, _ = finish(torchrun(2, "fit_image.py", *args))
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["count"] == 3
    assert {name: m["rank"] for name, m in summary["images"].items()} == {"im0": 0, "im1": 1, "im2": 0}
    for name, metrics in summary["images"].items():
        assert metrics["psnr"] > 15 and (out / name / "reconstruction.png").exists()
        assert len(list((out / name / "tb").iterdir())) == 1  # one writer per image
    assert summary["mean"]["psnr"] == pytest.approx(np.mean([m["psnr"] for m in summary["images"].values()]))
    assert len(json_lines(stdout)) == 1  # printed once, by rank 0


@pytest.mark.slow
def test_two_ranks_fit_an_image_as_well_as_one_process_with_the_same_global_batch(tmp_path):
    write_images(tmp_path / "images", 1)
    image, args = str(tmp_path / "images" / "im0.png"), ("--steps", "40", "--seed", "3")
    finish(torchrun(1, "fit_image.py", "--image", image, "--out", str(tmp_path / "one"), *args))
    stdout, _ = finish(torchrun(2, "fit_image.py", "--image", image, "--out", str(tmp_path / "two"), *args))
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["psnr"] == pytest.approx(one["psnr"], abs=0.05)  # same batches, gradients averaged
    assert len(json_lines(stdout)) == 1 and len(list((tmp_path / "two" / "tb").iterdir())) == 1


@pytest.mark.slow
def test_nerf_on_two_ranks_resumes_after_the_job_is_killed(tmp_path):
    write_blender_scene(tmp_path / "sphere")
    (tmp_path / "nerf.toml").write_text(NERF_CONFIG)
    out = tmp_path / "run"
    args = ("--data", str(tmp_path / "sphere"), "--config", str(tmp_path / "nerf.toml"), "--out", str(out))
    job = torchrun(2, "fit_nerf.py", *args, "--steps", "400")
    wait_for(out / "checkpoint.pt", job)
    for pid in [*children(job.pid), job.pid]:  # the whole job, as a scheduler would
        os.kill(pid, signal.SIGKILL)
    job.wait()
    time.sleep(0.5)
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 10 <= stopped_at < 400 and not (out / "metrics.json").exists()
    assert len(list((out / "tb").iterdir())) == 1  # rank 0 alone logged

    # restart with a different number of ranks: the global batch, hence the run, is the same
    stdout, stderr = finish(torchrun(1, "fit_nerf.py", *args, "--steps", "400", "--resume"), timeout=600)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 400
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == stopped_at and metrics["ranks"] == 1
    assert metrics["psnr"] > 20 and set(metrics["per_view"]) == {"r_0", "r_1"}
    assert (out / "eval_val" / "r_0.png").exists() and (out / "eval_val" / "r_1.png").exists()
    assert len(json_lines(stdout)) == 1


@pytest.mark.slow
def test_nerf_views_rendered_on_two_ranks_match_one_process(tmp_path):
    write_blender_scene(tmp_path / "sphere")
    (tmp_path / "nerf.toml").write_text(NERF_CONFIG)
    out = tmp_path / "two"
    args = ("--data", str(tmp_path / "sphere"), "--config", str(tmp_path / "nerf.toml"), "--steps", "40")
    _, stderr = finish(torchrun(2, "fit_nerf.py", *args, "--out", str(out)))
    two = json.loads((out / "metrics.json").read_text())
    assert two["ranks"] == 2 and len(iio.imread(out / "turntable.mp4", plugin="FFMPEG")) == 4
    assert "drifted apart" not in stderr  # occupancy grids and step counters stayed equal on both ranks

    # rank 1 rendered r_1: its metrics, gathered on rank 0, equal this process's rendering of the checkpoint
    cfg = resolve_config(None, str(tmp_path / "nerf.toml"))
    model = NeRFModel(build_radiance_field(cfg.field, torch.tensor(cfg.aabb)), cfg.sampler)
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    split = load_blender(tmp_path / "sphere", "val", 1, tuple(cfg.background))
    here = evaluate_views(model, split, [0, 1], torch.tensor(cfg.background), cfg.eval_chunk, None)
    for name in ("r_0", "r_1"):
        assert two["per_view"][name]["psnr"] == pytest.approx(here[name]["psnr"], abs=1e-3)
    assert here["r_0"]["psnr"] != pytest.approx(here["r_1"]["psnr"], abs=1e-3)  # the views are told apart


@pytest.mark.slow
def test_a_dead_rank_stops_the_job_with_a_clear_message(tmp_path):
    write_images(tmp_path / "images", 1)
    out = tmp_path / "run"
    image = str(tmp_path / "images" / "im0.png")
    job = torchrun(2, "fit_image.py", "--image", image, "--out", str(out), "--steps", "100000")
    wait_for(out / "checkpoint.pt", job)
    workers = children(job.pid)
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGKILL)
    _, stderr = job.communicate(timeout=120)  # stops instead of hanging
    assert job.returncode != 0
    assert "lost contact with another rank" in stderr or "launcher ended this process" in stderr, stderr[-3000:]
    assert "[rank0]: Traceback" not in stderr, stderr[-3000:]  # the surviving rank explains itself in one line


def test_a_torchrun_rank_exits_without_interpreter_finalization(monkeypatch, capsys):
    """Under torchrun ``cli.run`` ends the process itself with the exit code (gloo can abort a finished
    rank during finalization); in one process it returns the code to the caller."""
    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)

    def fails(argv):
        raise CamfieldsError("no such video")

    assert cli.run(fails, []) == 2 and exits == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    cli.run(fails, [])
    assert exits == [2]
    assert "rank 1: error: no such video" in capsys.readouterr().err
    cli.run(lambda argv: None, [])
    assert exits == [2, 0]


@pytest.mark.slow
def test_a_fit_on_two_ranks_extends_like_the_longer_fit(tmp_path):
    write_images(tmp_path / "images", 1)
    image = str(tmp_path / "images" / "im0.png")
    finish(torchrun(2, "fit_image.py", "--image", image, "--out", str(tmp_path / "ext"), "--steps", "20"))
    finish(torchrun(2, "fit_image.py", "--image", image, "--out", str(tmp_path / "ext"), "--steps", "40", "--resume"))
    finish(torchrun(2, "fit_image.py", "--image", image, "--out", str(tmp_path / "long"), "--steps", "40"))
    extended, straight = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ext", "long"))
    assert extended["resumed_from"] == 20 and extended["steps"] == 40 and extended["ranks"] == 2
    assert extended["psnr"] == pytest.approx(straight["psnr"], abs=1e-4)  # the image schedule spans 2000 steps
    config = json.loads((tmp_path / "ext" / "config.json").read_text())
    assert config["train"]["steps"] == 40 and config["train"]["schedule_steps"] == 2000
