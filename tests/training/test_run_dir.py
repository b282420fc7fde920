"""Run folders you can trust: the data a fit used, the lock, leftovers of failed fits, extending a fit."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_fit_protocol import TOY_PRESETS, ToyTask
from test_image_task import write

from camfields import CamfieldsError
from camfields.tasks.image import fit_images, resolve_config
from camfields.training.fit import run_fit
from camfields.training.hooks import Hook
from camfields.training.run_dir import lock_run_dir

TINY = {"field": {"hidden": 16, "encoding": {"num_features": 8}}, "train": {"steps": 4, "checkpoint_every": 2}}


def image(path, seed=1):
    return write(path, np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8))


def tiny(**train):
    return resolve_config("cam", overrides={**TINY, "train": {**TINY["train"], **train}})


def test_a_run_folder_records_its_data_and_refuses_to_resume_on_other_data(tmp_path):
    a, b = image(tmp_path / "a.png", 1), image(tmp_path / "b.png", 2)
    fit_images(a, tiny(), tmp_path / "run", "cpu", progress=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["task"] == "image" and recorded["fitted_data"]["path"] == str(a.resolve())
    assert recorded["fitted_data"]["bytes"] == a.stat().st_size and len(recorded["fitted_data"]["sha256"]) == 64
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(
        CamfieldsError, match=r"it was fitted on .*a\.png \(\d[\d,]* bytes, sha256 [0-9a-f]{12}\), not on .*b\.png"
    ):
        fit_images(b, tiny(), tmp_path / "run", "cpu", resume=True, progress=False)
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before  # nothing overwritten
    a.rename(tmp_path / "moved.png")  # the same content elsewhere is the same data
    fit_images(tmp_path / "moved.png", tiny(), tmp_path / "run", "cpu", resume=True, progress=False)


def test_a_folder_of_images_records_the_folder_and_each_image(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image(folder / "x.png", 1), image(folder / "y.png", 2)
    fit_images(folder, tiny(), tmp_path / "run", "cpu", progress=False)
    top = json.loads((tmp_path / "run" / "config.json").read_text())["fitted_data"]
    assert top["files"] == 2 and top["path"] == str(folder.resolve())
    each = json.loads((tmp_path / "run" / "y" / "config.json").read_text())["fitted_data"]
    assert each["path"] == str((folder / "y.png").resolve())
    image(folder / "z.png", 3)  # the folder changed: resuming it is refusing other data
    with pytest.raises(CamfieldsError, match="3 files"):
        fit_images(folder, tiny(), tmp_path / "run", "cpu", resume=True, progress=False)


def test_a_held_folder_is_refused_at_once_and_stale_temporaries_are_cleaned(tmp_path):
    a = image(tmp_path / "a.png")
    out = tmp_path / "run"
    code = f"from camfields.training.run_dir import lock_run_dir\nwith lock_run_dir({str(out)!r}):\n"
    code += "    print('held', flush=True)\n    input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CamfieldsError, match=rf"being written by another fit \(process {holder.pid}\); wait"):
            fit_images(a, tiny(), out, "cpu", progress=False)
    finally:
        holder.communicate("\n", timeout=30)
    stale = out / ".checkpoint.pt.k2j3h4.tmp"
    stale.write_bytes(b"left by a killed writer")
    fit_images(a, tiny(), out, "cpu", progress=False)  # the lock died with its process
    assert not stale.exists() and (out / "metrics.json").exists()
    with lock_run_dir(out), pytest.raises(CamfieldsError, match="being written by another fit"):
        fit_images(a, tiny(), out, "cpu", resume=True, progress=False)  # also within one process


class Fail(Hook):
    def __init__(self, at):
        self.at = at

    def after_step(self, step, model):
        if step == self.at:
            raise RuntimeError("simulated failure")


@pytest.mark.parametrize("existing", [False, True])
def test_a_fit_that_fails_before_its_first_checkpoint_leaves_nothing_and_the_rerun_works(tmp_path, existing):
    out = tmp_path / "run"
    if existing:
        out.mkdir()  # a folder the user made: kept, emptied of what the fit wrote
    task, cfg = ToyTask(), TOY_PRESETS.resolve()
    data = task.load(cfg, None)
    failing = ToyTask()
    failing.build = lambda cfg, data, device: dataclasses.replace(task.build(cfg, data, device), hooks=[Fail(2)])
    with pytest.raises(RuntimeError, match="simulated failure"):
        run_fit(failing, cfg, data, out, torch.device("cpu"), progress=False)
    assert out.exists() is existing and (not existing or [p.name for p in out.iterdir()] == [".lock"])
    run_fit(task, cfg, data, out, torch.device("cpu"), progress=False)  # the corrected rerun is not refused
    # a failure after a checkpoint keeps the folder, to resume
    with pytest.raises(RuntimeError, match="simulated failure"):
        failing.build = lambda cfg, data, device: dataclasses.replace(task.build(cfg, data, device), hooks=[Fail(4)])
        run_fit(failing, cfg, data, tmp_path / "late", torch.device("cpu"), progress=False)
    assert (tmp_path / "late" / "checkpoint.pt").exists() and (tmp_path / "late" / "config.json").exists()


def test_an_image_fit_extended_with_resume_equals_the_longer_fit(tmp_path):
    a = image(tmp_path / "a.png")
    fit_images(a, tiny(steps=4), tmp_path / "short", "cpu", progress=False)
    extended = fit_images(a, tiny(steps=8), tmp_path / "short", "cpu", resume=True, progress=False)
    straight = fit_images(a, tiny(steps=8), tmp_path / "long", "cpu", progress=False)
    assert extended["resumed_from"] == 4 and extended["steps"] == 8
    # the image presets' schedule spans 2000 steps whatever the fit's length: extending continues the same curve
    assert extended["psnr"] == straight["psnr"] and extended["ssim"] == straight["ssim"]
    recorded = json.loads((tmp_path / "short" / "config.json").read_text())
    assert recorded["train"]["steps"] == 8 and recorded["train"]["schedule_steps"] == 2000
    with pytest.raises(CamfieldsError, match="with 6 steps: it was planned for 8"):
        fit_images(a, tiny(steps=6), tmp_path / "short", "cpu", resume=True, progress=False)


def test_an_extended_fit_keeps_its_planned_schedule_and_continues_at_its_final_rate(tmp_path):
    # the toy's schedule spans the fit (schedule_steps 0): 6 + 6 steps follow the 6-step schedule, then its final rate
    task, cfg = ToyTask(), TOY_PRESETS.resolve()
    data = task.load(cfg, None)
    run_fit(task, cfg, data, tmp_path / "ext", torch.device("cpu"), progress=False)
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=12))
    extended = run_fit(task, longer, data, tmp_path / "ext", torch.device("cpu"), resume=True, progress=False)
    assert extended["resumed_from"] == 6 and extended["steps"] == 12
    pinned = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=12, schedule_steps=6))
    rule = run_fit(task, pinned, data, tmp_path / "rule", torch.device("cpu"), progress=False)
    assert extended["first_weight"] == rule["first_weight"] and extended["psnr"] == rule["psnr"]
    fresh = run_fit(task, longer, data, tmp_path / "fresh", torch.device("cpu"), progress=False)
    assert fresh["first_weight"] != rule["first_weight"]  # the rule is not "replan over 12 steps"
    assert json.loads((tmp_path / "ext" / "config.json").read_text())["train"]["schedule_steps"] == 6


def test_a_sweep_can_refuse_to_extend_the_points_it_finds(tmp_path):
    task, cfg = ToyTask(), TOY_PRESETS.resolve()
    data = task.load(cfg, None)
    run_fit(task, cfg, data, tmp_path / "p", torch.device("cpu"), progress=False)
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=12))
    with pytest.raises(CamfieldsError, match=r"\(train.steps differs\)"):
        run_fit(task, longer, data, tmp_path / "p", torch.device("cpu"), resume=True, progress=False, extend=False)


def test_a_refused_fit_touches_nothing_of_the_fit_that_holds_the_folder(tmp_path):
    a, out = image(tmp_path / "a.png"), tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # the holder's files, before its first checkpoint
    (out / "tb").mkdir()
    with lock_run_dir(out), pytest.raises(CamfieldsError, match="being written by another fit"):
        fit_images(a, tiny(), out, "cpu", progress=False)
    assert (out / "config.json").read_text() == "{}" and (out / "tb").is_dir()


def test_a_fit_without_its_config_is_neither_overwritten_nor_resumed(tmp_path):
    a = image(tmp_path / "a.png")
    fit_images(a, tiny(), tmp_path / "run", "cpu", progress=False)
    (tmp_path / "run" / "config.json").unlink()
    with pytest.raises(CamfieldsError, match="already holds a fit"):
        fit_images(a, tiny(), tmp_path / "run", "cpu", progress=False)
    with pytest.raises(CamfieldsError, match="holds a fit but no config.json"):
        fit_images(a, tiny(), tmp_path / "run", "cpu", resume=True, progress=False)


def test_a_diverging_fit_stops_with_a_sentence_before_saving_its_weights(tmp_path):
    a = image(tmp_path / "a.png")
    with pytest.raises(CamfieldsError, match=r"the fit diverged: its loss is nan at step \d+; lower train.lr"):
        fit_images(
            a, tiny(lr=1e30, steps=40, checkpoint_every=20, log_every=5), tmp_path / "run", "cpu", progress=False
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda state: state.update(step=10**12), "records step 1,000,000,000,000, past the fit's 4 steps"),
        (lambda state: next(iter(state["model"].values())).fill_(float("nan")), "holds NaN or infinite weights"),
    ],
)
def test_a_checkpoint_past_the_plan_or_with_broken_weights_is_refused(tmp_path, change, message):
    from camfields.training.checkpoint import load_checkpoint, save_checkpoint

    a = image(tmp_path / "a.png")
    fit_images(a, tiny(), tmp_path / "run", "cpu", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, state)
    before = path.read_bytes()
    with pytest.raises(CamfieldsError, match=message):
        fit_images(a, tiny(), tmp_path / "run", "cpu", resume=True, progress=False)
    assert path.read_bytes() == before


def test_data_that_cannot_be_read_is_one_sentence(tmp_path):
    from camfields.io.identity import data_identity

    with pytest.raises(CamfieldsError, match=r"cannot read .*missing\.png to record what was fitted"):
        data_identity(tmp_path / "missing.png")
