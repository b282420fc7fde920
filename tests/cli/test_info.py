"""``camfields info``: what a run folder (finished, interrupted, extended, a folder of images) or a
.camf bitstream holds, as a table and as JSON, and one sentence for anything else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO

from camfields import metrics
from camfields.__main__ import main
from camfields.codec.video import encode
from camfields.commands.info import human_bytes, human_seconds
from camfields.modules.nerv import GeneratorConfig, build_generator
from camfields.tasks import image
from camfields.tasks.image import fit_images, resolve_config
from camfields.training.hooks import Hook
from camfields.training.run_dir import lock_run_dir

TINY = {"field": {"hidden": 16, "encoding": {"num_features": 8}}}


def tiny_config(steps: int = 4, **train: int) -> image.ImageConfig:
    return resolve_config("cam", overrides={**TINY, "train": {"steps": steps, "checkpoint_every": 2, **train}})


def write_image(path: Path, size: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))
    return path


def info(path: Path, capsys, *options: str) -> str:
    """What ``camfields info PATH`` prints; fails on a non-zero exit."""
    assert main(["info", str(path), *options]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def info_json(path: Path, capsys) -> dict:
    return json.loads(info(path, capsys, "--json"))


@pytest.fixture(scope="module", autouse=True)
def _no_lpips():
    """LPIPS null without building it: it is not what these tests check, and building it (or failing
    to, offline) takes seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(metrics._LPIPS_STATE, "model", None)
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 4-step image fit of a 16x16 random PNG."""
    root = tmp_path_factory.mktemp("info")
    fit_images(write_image(root / "photo.png"), tiny_config(), root / "run", "cpu", progress=False)
    return root / "run"


def table(text: str) -> dict[str, str]:
    """The printed 'key  value' lines as a dict (a key may hold one space, never two)."""
    return {key.strip(): value.strip() for key, value in (line.split("  ", 1) for line in text.splitlines())}


def test_a_finished_image_fit_shows_task_data_steps_and_its_metrics(run, capsys):
    metrics = json.loads((run / "metrics.json").read_text())
    data = json.loads((run / "config.json").read_text())["fitted_data"]
    shown = table(info(run, capsys))
    assert shown["task"] == "image" and shown["model"] == "cam" and shown["state"] == "finished"
    assert shown["steps"] == "4 / 4"
    assert shown["data"] == f"{data['path']} ({data['bytes']:,} bytes, sha256 {data['sha256'][:12]})"
    assert shown["evaluation"].startswith(f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} at step 4")
    assert shown["parameters"] == f"{metrics['params']:,}"
    assert shown["checkpoint"] == human_bytes((run / "checkpoint.pt").stat().st_size)
    assert shown["device"] == metrics["device"] and shown["time spent"] == human_seconds(metrics["seconds"])

    facts = info_json(run, capsys)
    assert facts["task"] == "image" and facts["data"] == data
    assert facts["steps"] == {"done": 4, "planned": 4, "schedule_steps": 2000, "past_schedule": False}
    assert facts["evaluation"]["psnr"] == metrics["psnr"] and facts["evaluation"]["lpips"] == metrics["lpips"]
    assert facts["params"] == metrics["params"] and facts["stored_values"] is None
    assert facts["seconds"] == metrics["seconds"]
    assert facts["checkpoint_bytes"] == (run / "checkpoint.pt").stat().st_size
    # a file of the folder stands for the folder
    assert info_json(run / "metrics.json", capsys) == facts


def test_an_older_folder_shows_what_it_has_and_not_recorded_for_the_rest(run, tmp_path, capsys):
    folder = shutil.copytree(run, tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    older = {k: v for k, v in config.items() if k not in ("task", "fitted_data")}  # written before they were recorded
    (folder / "config.json").write_text(json.dumps(older))
    (folder / "checkpoint.pt").unlink()
    shown = table(info(folder, capsys))
    assert shown["task"] == shown["data"] == shown["checkpoint"] == "not recorded"
    assert shown["model"] == "cam" and shown["steps"] == "4 / 4" and shown["state"] == "finished"
    facts = info_json(folder, capsys)
    assert facts["task"] is None and facts["data"] is None and facts["checkpoint_bytes"] is None

    (folder / "config.json").write_text(json.dumps(config | {"fitted_data": None}))  # a fit of built-in data
    assert table(info(folder, capsys))["data"] == "the task's built-in data"


class Stop(Exception):
    """Raised by the hook that interrupts a fit."""


class StopAt(Hook):
    def __init__(self, step: int):
        self.step = step

    def before_step(self, step: int, model: torch.nn.Module, generator: torch.Generator) -> None:
        if step == self.step:
            raise Stop


def test_an_interrupted_fit_counts_its_steps_from_the_checkpoint_and_an_extension_says_so(
    tmp_path, capsys, monkeypatch
):
    source, out = write_image(tmp_path / "a.png"), tmp_path / "run"
    build = image.IMAGE.build

    def build_stopping(*args):
        setup = build(*args)
        setup.hooks.append(StopAt(3))  # after the checkpoint of step 2
        return setup

    with monkeypatch.context() as patch:
        patch.setattr(image.IMAGE, "build", build_stopping)
        with pytest.raises(Stop):
            fit_images(source, tiny_config(schedule_steps=0), out, "cpu", progress=False)
    facts = info_json(out, capsys)
    assert facts["state"] == "stopped" and facts["steps"]["done"] == 2 and facts["steps"]["planned"] == 4
    assert facts["evaluation"] is None and facts["params"] is None and facts["seconds"] > 0
    model = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert facts["stored_values"] == sum(v.numel() for v in model.values())
    shown = table(info(out, capsys))
    assert shown["steps"] == "2 / 4" and shown["evaluation"] == "not recorded" and shown["state"] == "stopped"
    assert shown["stored values"].startswith(f"{facts['stored_values']:,} ")

    fit_images(source, tiny_config(6, schedule_steps=0), out, "cpu", resume=True, progress=False)
    facts = info_json(out, capsys)
    assert facts["steps"] == {"done": 6, "planned": 6, "schedule_steps": 4, "past_schedule": True}
    assert facts["resumed_from"] == 2 and facts["state"] == "finished" and facts["params"] > 0
    shown = table(info(out, capsys))
    assert shown["steps"] == "6 / 6 (steps past 4 run at the schedule's final rate)"
    assert shown["resumed"] == "from step 2"


def test_a_folder_of_images_shows_their_means_and_count(tmp_path, capsys):
    for k in range(2):
        write_image(tmp_path / "photos" / f"p{k}.png", size=8, seed=k)
    summary = fit_images(tmp_path / "photos", tiny_config(2), tmp_path / "run", "cpu", progress=False)
    facts = info_json(tmp_path / "run", capsys)
    assert facts["data"]["files"] == 2 and facts["images"] == {"finished": 2, "unfinished": 0}
    assert facts["evaluation"]["psnr"] == summary["mean"]["psnr"] and facts["steps"]["done"] == 2
    assert facts["seconds"] == pytest.approx(sum(m["seconds"] for m in summary["images"].values()))
    assert facts["checkpoints"] == 2
    assert table(info(tmp_path / "run", capsys))["images"] == "2 finished, 0 unfinished"


def test_a_held_folder_is_shown_as_running(run, capsys):
    with lock_run_dir(run):
        assert info_json(run, capsys)["state"] == f"running (process {os.getpid()})"
    assert info_json(run, capsys)["state"] == "finished"


@pytest.fixture(scope="module")
def bitstream(tmp_path_factory) -> tuple[Path, int, int]:
    """A .camf of an untrained 16x16 generator, 3 frames at 8 bits; its path, size and weight count."""
    cfg = GeneratorConfig(strides=[2, 2], channels=8, stem_channels=4, stem_hidden=16, embedding_levels=4)
    generator = build_generator(cfg, 16, 16)
    path = tmp_path_factory.mktemp("camf") / "clip.camf"
    size = encode(path, generator, cfg, bits=8, frames=3)
    return path, size, sum(p.numel() for p in generator.parameters())


def test_a_bitstream_shows_its_header_and_size(bitstream, capsys):
    path, size, weights = bitstream
    facts = info_json(path, capsys)
    assert facts["format"] == "camfields-video/1" and facts["frames"] == 3 and facts["bits"] == 8
    assert (facts["width"], facts["height"]) == (16, 16) and facts["weights"] == weights
    assert facts["bytes"] == size == path.stat().st_size and facts["bpp"] == pytest.approx(8 * size / (16 * 16 * 3))
    shown = table(info(path, capsys))
    assert shown["kind"] == "camfields-video/1 bitstream" and shown["size"] == "16x16"
    assert shown["frames"] == "3" and shown["bytes"] == f"{size:,}" and shown["weights"] == f"{weights:,}"


def test_a_run_folder_with_a_bitstream_shows_its_size_and_bits(run, bitstream, tmp_path, capsys):
    folder = shutil.copytree(run, tmp_path / "run")  # stands in for a video fit's folder (one takes seconds)
    shutil.copy(bitstream[0], folder / "video.camf")
    facts = info_json(folder, capsys)
    assert facts["bitstream"]["bytes"] == bitstream[1] and facts["bitstream"]["bits"] == 8
    assert table(info(folder, capsys))["bitstream"].startswith(f"video.camf: {bitstream[1]:,} bytes, 8-bit weights")


def corrupt_config(folder: Path) -> Path:
    (folder / "config.json").write_text('{"task": "image", ')
    return folder


def not_an_object(folder: Path) -> Path:
    (folder / "config.json").write_text("[1, 2]")
    return folder


def truncated_checkpoint(folder: Path) -> Path:
    (folder / "checkpoint.pt").write_bytes((folder / "checkpoint.pt").read_bytes()[:100])
    return folder


@pytest.mark.parametrize(
    "damage, message",
    [
        (corrupt_config, "could not read {path}/config.json"),
        (not_an_object, "{path}/config.json holds a JSON list, not the object camfields writes"),
        (truncated_checkpoint, "checkpoint {path}/checkpoint.pt is truncated or corrupt"),
    ],
)
def test_a_damaged_run_folder_is_one_sentence(run, tmp_path, capsys, damage, message):
    folder = damage(shutil.copytree(run, tmp_path / "run"))
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(path=folder)) and err.count("\n") == 1


def test_bad_paths_are_one_sentence(run, bitstream, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "cut.camf").write_bytes(bitstream[0].read_bytes()[:-9])
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "empty": "is not a run folder: it holds none of config.json, checkpoint.pt, metrics.json",
        run.parent: "is not a run folder",  # a folder of runs
        tmp_path / "notes.txt": "is neither a run folder nor a .camf bitstream",
        tmp_path / "cut.camf": "is not a valid camfields bitstream: checksum mismatch",
    }
    for path, message in cases.items():
        assert main(["info", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path} {message}") and err.count("\n") == 1, err


def test_the_command_prints_one_error_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "camfields", "info", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {tmp_path / 'nothing'} does not exist\n"


def test_human_units():
    assert [human_seconds(s) for s in (0.71, 125, 3 * 3600 + 250)] == ["0.7 s", "2 min 05 s", "3 h 04 min"]
    assert [human_bytes(b) for b in (852, 100593, 3 << 30)] == ["852 B", "98.2 KiB", "3.0 GiB"]
