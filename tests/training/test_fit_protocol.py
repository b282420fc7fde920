"""The task protocol: the preset registry, run_fit's record and resume, export, hooks of the video task."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from camfields import CamfieldsError
from camfields.config import Presets
from camfields.training import CoordinateRegression, TrainConfig
from camfields.training.fit import Setup, Task, run_fit


@dataclass
class ToyConfig:
    model: str = "small"
    width: int = 4
    extra: int = 0
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=6, checkpoint_every=3))

    def validate(self) -> None:
        self.train.validate()


TOY_PRESETS = Presets(ToyConfig, default="small")


@TOY_PRESETS.register("small")
def small() -> dict:
    return {"width": 4}


@TOY_PRESETS.register("wide")
def wide() -> dict:
    return {"width": 16}


class ToyTask(Task[ToyConfig, torch.Tensor]):
    """Regress y = sin(3x) with a small MLP; ``plan`` records the data size in ``extra``."""

    name = "toy"
    presets = TOY_PRESETS

    def __init__(self, fail_in_build: bool = False):
        self.fail_in_build = fail_in_build

    def load(self, cfg, source):
        return torch.linspace(-1, 1, 32)[:, None]

    def plan(self, cfg, data, shard):
        return dataclasses.replace(cfg, extra=len(data))

    def build(self, cfg, data, device):
        if self.fail_in_build:
            raise CamfieldsError("this model does not fit this data")
        model = torch.nn.Sequential(torch.nn.Linear(1, cfg.width), torch.nn.Tanh(), torch.nn.Linear(cfg.width, 1))
        objective = CoordinateRegression(data, torch.sin(3 * data), batch_size=8)
        return Setup(model, objective, "toy")

    def evaluate(self, cfg, data, setup, result, out_dir, shard, progress):
        return {
            "psnr": result.evaluation.metrics["psnr"],
            "width": cfg.width,
            "first_weight": setup.model[0].weight[0, 0].item(),
        }


def test_presets_register_merge_over_defaults_and_resolve():
    assert list(TOY_PRESETS) == ["small", "wide"] and "wide" in TOY_PRESETS and len(TOY_PRESETS) == 2
    assert TOY_PRESETS.settings("wide")["train"]["steps"] == 6  # the defaults fill what a preset leaves out
    cfg = TOY_PRESETS.resolve("wide", overrides={"train": {"steps": 2}})
    assert (cfg.model, cfg.width, cfg.train.steps) == ("wide", 16, 2)
    assert TOY_PRESETS.resolve().model == "small"
    with pytest.raises(CamfieldsError, match="unknown model 'huge'; choose one of small, wide"):
        TOY_PRESETS.resolve("huge")
    with pytest.raises(ValueError, match="registered twice"):
        TOY_PRESETS.register("wide")(wide)


def test_run_fit_seeds_records_the_planned_config_and_metrics_and_resumes(tmp_path):
    task, cfg = ToyTask(), TOY_PRESETS.resolve("small")
    data = task.load(cfg, None)
    torch.manual_seed(123)  # run_fit seeds itself: a global seed changes nothing
    first = run_fit(task, cfg, data, tmp_path / "a", torch.device("cpu"), progress=False)
    again = run_fit(task, cfg, data, tmp_path / "b", torch.device("cpu"), progress=False)
    assert first["first_weight"] == again["first_weight"] and first["psnr"] == again["psnr"]
    recorded = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert recorded == first
    assert {k: first[k] for k in ("width", "steps", "ranks", "resumed_from", "device")} == {
        "width": 4,
        "steps": 6,
        "ranks": 1,
        "resumed_from": None,
        "device": first["device"],
    }
    assert first["seconds"] > 0 and first["device"].startswith("CPU")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["extra"] == 32  # the planned config

    with pytest.raises(CamfieldsError, match="already holds a fit"):
        run_fit(task, cfg, data, tmp_path / "a", torch.device("cpu"), progress=False)
    half = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=3))
    with pytest.raises(CamfieldsError, match="with 3 steps: it was planned for 6; --resume can extend a fit"):
        run_fit(task, half, data, tmp_path / "a", torch.device("cpu"), resume=True, progress=False)
    wide_cfg = dataclasses.replace(cfg, width=8)
    with pytest.raises(CamfieldsError, match=r"\(width differs\)"):
        run_fit(task, wide_cfg, data, tmp_path / "a", torch.device("cpu"), resume=True, progress=False)


def test_run_fit_writes_nothing_when_the_model_cannot_be_built(tmp_path):
    cfg = TOY_PRESETS.resolve()
    with pytest.raises(CamfieldsError, match="does not fit this data"):
        run_fit(ToyTask(fail_in_build=True), cfg, torch.zeros(4, 1), tmp_path / "run", torch.device("cpu"))
    assert not (tmp_path / "run").exists()


def test_a_task_without_a_file_format_says_so():
    with pytest.raises(CamfieldsError, match="toy fields cannot be written to a compressed file yet"):
        ToyTask().export(TOY_PRESETS.resolve(), None, Path("x.camf"))


def test_video_hooks_switch_qat_on_at_its_step_and_prune_after_each_step():
    from camfields.compression.qat import QuantizationSchedule
    from camfields.modules.nerv import GeneratorConfig, build_generator
    from camfields.tasks.video.model import MagnitudePruning, VideoModel
    from camfields.training.hooks import read_through

    torch.manual_seed(0)
    gen = GeneratorConfig(strides=[2], channels=8, stem_channels=4, stem_hidden=8, embedding_levels=4)
    model = VideoModel(build_generator(gen, 8, 8), bits=4)
    schedule = QuantizationSchedule(start=3, steps=6, bits=4, dampening=1.0)
    times = torch.tensor([0.5])
    for step, expected in ((0, False), (2, False), (3, True), (5, True)):
        read = read_through([schedule], step, model, lambda m: m(times, False))
        assert torch.equal(read, model(times, expected)), step  # the loss reads the levels once QAT is on
        assert (schedule.penalty(step, model) is None) is (not expected), step
    ramp = [schedule.penalty(step, model).item() for step in (3, 4, 5)]
    assert 0 < ramp[0] < ramp[1] < ramp[2]  # dampening ramps up from the start to the last step

    pruning = MagnitudePruning(start=2, fraction=0.5)
    pruning.after_step(1, model)
    assert not pruning.masks
    pruning.after_step(2, model)
    weight = model.generator.convs[0].weight
    assert pruning.masks and 0.45 < float((weight == 0).float().mean()) < 0.55
    with torch.no_grad():
        weight.add_(1.0)  # an optimizer step moves the pruned weights ...
    pruning.after_step(3, model)  # ... and the same mask zeroes them again
    assert torch.equal(weight == 0, ~pruning.masks["convs.0.weight"])


@pytest.mark.parametrize(
    "module",
    [
        "camfields.training.fit",
        "camfields.training.hooks",
        "camfields.training.schedules",
        "camfields.config",
        "camfields.io.identity",
        "camfields.codec.video",
        "camfields.ops.conv_modulate",
    ],
)
def test_the_docstring_examples_run(module):
    import doctest
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LPIPS may be unavailable offline
        result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0, result
