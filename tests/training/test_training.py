"""The shared loop: optimizer groups, schedules, checkpoints, resume equality, output folders."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from camfields import CAMMLP, CamfieldsError, DenseGrid, FourierFeatures, HashGridEncoding, PlaneGrid
from camfields.training import CoordinateRegression, TrainConfig, build_optimizer, train
from camfields.training.checkpoint import load_checkpoint, save_checkpoint
from camfields.training.hooks import Hook
from camfields.training.loop import CHECKPOINT_NAME
from camfields.training.run_dir import prepare_run_dir
from camfields.training.schedules import lr_factor


def toy_model(grid=True) -> CAMMLP:
    return CAMMLP(
        2,
        3,
        hidden=16,
        depth=2,
        encoding=FourierFeatures(2, 8, 3.0),
        grid=functools.partial(DenseGrid, (6, 6)) if grid else None,
        norm="layer",
    )


def toy_objective(batch_size=64) -> CoordinateRegression:
    g = torch.Generator().manual_seed(3)
    coords = torch.rand(300, 2, generator=g) * 2 - 1
    targets = torch.sin(3 * coords).sum(-1, keepdim=True).repeat(1, 3).sigmoid()
    return CoordinateRegression(coords, targets, batch_size)


def test_every_parameter_lands_in_its_intended_group():
    model = CAMMLP(
        3,
        4,
        hidden=8,
        depth=2,
        encoding=HashGridEncoding(3, levels=2, log2_table_size=6),
        grid=functools.partial(PlaneGrid, (4, 4, 4)),
        norm="layer",
    )
    cfg = TrainConfig(lr=2e-3, grid_lr_mult=10.0)
    opt = build_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    names_by_id = {id(p): n for n, p in model.named_parameters()}
    grid_names = {names_by_id[id(p)] for p in groups["grid"]["params"]}
    mlp_names = {names_by_id[id(p)] for p in groups["mlp"]["params"]}
    assert grid_names == {n for n in names_by_id.values() if n.startswith(("encoding.grid.", "modulation.grid."))}
    assert mlp_names == {n for n in names_by_id.values() if n.startswith(("hidden_layers.", "output_layer."))}
    assert grid_names.isdisjoint(mlp_names) and len(grid_names | mlp_names) == len(names_by_id)
    assert groups["grid"]["lr"] == pytest.approx(2e-2) and groups["mlp"]["lr"] == pytest.approx(2e-3)
    assert "modulation" not in groups

    # modulation_lr_mult moves exactly the CAM grids into their own group at their own rate
    split = {g["name"]: g for g in build_optimizer(model, TrainConfig(lr=2e-3, modulation_lr_mult=1.0)).param_groups}
    modulation_names = {names_by_id[id(p)] for p in split["modulation"]["params"]}
    assert modulation_names == {n for n in grid_names if n.startswith("modulation.grid.")} != set()
    assert {names_by_id[id(p)] for p in split["grid"]["params"]} == grid_names - modulation_names
    assert split["modulation"]["lr"] == pytest.approx(2e-3) and split["grid"]["lr"] == pytest.approx(2e-2)


@pytest.mark.parametrize(
    "schedule,steps,expected",
    [
        ("constant", (0, 50, 100), [1, 1, 1]),
        ("step", (0, 50, 51, 76, 100), [1, 1, 0.1, 0.01, 0.01]),  # milestones at 50.5 and 75.75
        ("cosine", (0, 50, 100), [1, 0.505, 0.01]),
        ("exponential", (0, 50, 100), [1, 0.1, 0.01]),
    ],
)
def test_schedules(schedule, steps, expected):
    cfg = TrainConfig(steps=101, schedule=schedule, milestones=[0.5, 0.75], decay=0.1, final_lr_ratio=0.01)
    assert [lr_factor(cfg, s) for s in steps] == pytest.approx(expected, rel=1e-3)


def test_training_reduces_the_loss_and_grids_move(tmp_path):
    torch.manual_seed(0)
    model = toy_model()
    objective = toy_objective()
    before = objective.evaluate(model).metrics["psnr"]
    result = train(model, objective, TrainConfig(steps=60, lr=1e-2), tmp_path, progress=False, tensorboard=False)
    assert result.evaluation.metrics["psnr"] > before + 5
    assert model.modulation.grid.table.abs().max() > 0


def test_resume_after_a_crash_gives_identical_weights(tmp_path):
    cfg = TrainConfig(steps=30, lr=5e-3, checkpoint_every=10, batch_size=32, schedule="cosine")

    torch.manual_seed(0)
    straight = toy_model()
    train(straight, toy_objective(), cfg, tmp_path / "straight", progress=False)

    class Crash(Hook):
        def after_step(self, step, model):
            if step == 17:
                raise RuntimeError("simulated kill")

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(toy_model(), toy_objective(), cfg, tmp_path / "crashed", progress=False, hooks=[Crash()])
    assert load_checkpoint(tmp_path / "crashed" / CHECKPOINT_NAME)["step"] == 10

    torch.manual_seed(0)
    resumed = toy_model()
    result = train(resumed, toy_objective(), cfg, tmp_path / "crashed", resume=True, progress=False)
    assert result.resumed_from == 10
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


@pytest.mark.parametrize(
    "tamper,message",
    [
        (lambda state: state.pop("step"), "lacks a valid 'step' entry"),
        (lambda state: state.update(step=-100), "records step -100 after"),
        (lambda state: state.update(step=True), "lacks a valid 'step' entry"),
        (lambda state: state.update(model="weights"), "lacks a valid 'model' entry"),
        (lambda state: state["model"].update({k: v[:1] for k, v in state["model"].items()}), "does not fit"),
        (lambda state: state.update(generator=torch.zeros(3, dtype=torch.uint8)), "does not fit"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_one_sentence(tmp_path, tamper, message):
    cfg = TrainConfig(steps=4, checkpoint_every=2)
    train(toy_model(), toy_objective(), cfg, tmp_path, progress=False)
    path = tmp_path / CHECKPOINT_NAME
    state = load_checkpoint(path)
    tamper(state)
    save_checkpoint(path, state)
    with pytest.raises(CamfieldsError, match=message) as refused:
        train(
            toy_model(),
            toy_objective(),
            TrainConfig(steps=6, checkpoint_every=2),
            tmp_path,
            resume=True,
            progress=False,
        )
    assert "\n" not in str(refused.value)


def test_truncated_checkpoint_is_a_clear_error_and_is_left_alone(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "model": toy_model().state_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CamfieldsError, match="truncated or corrupt"):
        load_checkpoint(path)
    assert path.read_bytes() == data[: len(data) // 2]


def test_checkpoints_refuse_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": functools.partial(print, "pwned")}, path)
    with pytest.raises(CamfieldsError, match="holds Python objects besides tensors") as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value) and "truncated" not in str(refused.value)
    import pickle
    import warnings

    with open(path, "wb") as f:  # a pickle not written by torch: torch warns about its protocol
        pickle.dump({"step": 1, "payload": functools.partial(print, "pwned")}, f, protocol=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one sentence, not torch's "please file an issue" lines first
        with pytest.raises(CamfieldsError, match="holds Python objects besides tensors"):
            load_checkpoint(path)


@dataclasses.dataclass
class Inner:
    c: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    added: str = "off"  # a setting "added later": absent from older config files


@dataclasses.dataclass
class Outer:
    a: int = 1
    b: Inner = dataclasses.field(default_factory=Inner)


def test_run_dir_protects_earlier_fits(tmp_path):
    out = tmp_path / "run"
    prepare_run_dir(out, Outer(), resume=False)
    before = (out / "config.json").read_text()
    assert json.loads(before) == {"a": 1, "b": {"c": [1, 2], "added": "off"}}
    prepare_run_dir(out, Outer(a=2), resume=False)  # a config alone (a fit that never checkpointed) is reused
    prepare_run_dir(out, Outer(), resume=False)
    (out / "checkpoint.pt").write_bytes(b"a fit's checkpoint")
    with pytest.raises(CamfieldsError, match="already holds a fit"):
        prepare_run_dir(out, Outer(), resume=False)
    with pytest.raises(CamfieldsError, match=r"b\.c differs"):
        prepare_run_dir(out, Outer(b=Inner(c=[1, 3])), resume=True)
    prepare_run_dir(out, Outer(b=Inner(c=(1, 2))), resume=True)
    assert (out / "config.json").read_text() == before
    # a fit recorded before a setting existed resumes while that setting keeps its default, not otherwise
    (out / "config.json").write_text(json.dumps({"a": 1, "b": {"c": [1, 2]}}))
    prepare_run_dir(out, Outer(), resume=True)
    with pytest.raises(CamfieldsError, match=r"b\.added differs"):
        prepare_run_dir(out, Outer(b=Inner(added="on")), resume=True)


def test_bad_train_settings_are_clear_errors():
    with pytest.raises(CamfieldsError, match="schedule"):
        TrainConfig(schedule="linear").validate()
    with pytest.raises(CamfieldsError, match="steps"):
        TrainConfig(steps=0).validate()
    for mult in (0.0, -1.0):
        with pytest.raises(CamfieldsError, match="modulation_lr_mult must be positive"):
            TrainConfig(modulation_lr_mult=mult).validate()
    TrainConfig(modulation_lr_mult=None).validate()


class Recorder(Hook):
    """Records the steps it is called with; from step ``start`` on adds ``weight`` x the sum of squares
    of the parameters to the loss."""

    def __init__(self, start=0, weight=0.0):
        self.start, self.weight, self.before, self.after = start, weight, [], []

    def before_step(self, step, model, generator):
        self.before.append(step)

    def penalty(self, step, model):
        if step < self.start or not self.weight:
            return None
        return self.weight * sum((p**2).sum() for p in model.parameters())

    def after_step(self, step, model):
        self.after.append(step)


def test_hooks_see_the_loop_step_also_after_a_resume_and_their_penalty_trains(tmp_path):
    cfg = TrainConfig(steps=12, lr=1e-2, checkpoint_every=5, log_every=1)
    first = Recorder()
    torch.manual_seed(0)
    train(
        toy_model(), toy_objective(), dataclasses.replace(cfg, steps=5), tmp_path / "a", progress=False, hooks=[first]
    )
    assert first.before == [0, 1, 2, 3, 4] and first.after == [1, 2, 3, 4, 5]
    resumed = Recorder()
    torch.manual_seed(0)
    train(toy_model(), toy_objective(), cfg, tmp_path / "a", resume=True, progress=False, hooks=[resumed])
    assert resumed.before == list(range(5, 12)) and resumed.after == list(range(6, 13))

    norms = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = toy_model()
        train(model, toy_objective(), cfg, tmp_path / f"w{weight}", progress=False, hooks=[Recorder(6, weight)])
        norms[weight] = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
    assert norms[1.0] < 0.97 * norms[0.0], norms  # the penalty from step 6 on shrank the weights


def test_a_checkpoint_with_the_old_step_counter_buffer_still_resumes(tmp_path):
    cfg = TrainConfig(steps=4, checkpoint_every=2)
    torch.manual_seed(0)
    train(toy_model(), toy_objective(), dataclasses.replace(cfg, steps=2), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    state["model"]["steps_seen"] = torch.tensor(2)  # what models that counted their steps saved
    save_checkpoint(tmp_path / CHECKPOINT_NAME, state)
    result = train(toy_model(), toy_objective(), cfg, tmp_path, resume=True, progress=False)
    assert result.resumed_from == 2 and result.steps == 4
    state["model"]["stray_weight"] = torch.zeros(1)  # anything else that is not the model's is refused
    save_checkpoint(tmp_path / CHECKPOINT_NAME, state)
    with pytest.raises(CamfieldsError, match="does not fit this fit's model"):
        train(toy_model(), toy_objective(), cfg, tmp_path, resume=True, progress=False)


def test_the_image_schedule_spans_2000_steps_whatever_the_fit_length():
    from camfields.tasks.image import resolve_config

    for steps in (300, 2000, 5000):
        cfg = resolve_config("cam", overrides={"train": {"steps": steps}}).train
        before = dataclasses.replace(cfg, schedule_steps=0)  # the span was the fit's own steps
        factors = [lr_factor(cfg, s) for s in range(steps)]
        if steps == 2000:  # the full-length fit is unchanged, step for step
            assert factors == [lr_factor(before, s) for s in range(steps)]
        assert factors[:1000] == [1.0] * min(steps, 1000)  # a 300-step fit runs at the full rate
        if steps > 1500:
            assert factors[1000] == pytest.approx(0.1) and factors[-1] == pytest.approx(0.01)
    short = resolve_config("cam", overrides={"train": {"steps": 300}}).train
    assert [lr_factor(dataclasses.replace(short, schedule_steps=0), s) for s in (149, 150, 225)] == pytest.approx(
        [1.0, 0.1, 0.01]
    )  # what a 300-step fit did before
