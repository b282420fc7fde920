"""Config resolution: presets, files, overrides and the errors for typos."""

from __future__ import annotations

import pytest

from camfields import CamfieldsError
from camfields.config import SCENES_DIR
from camfields.fields import count_parameters
from camfields.modules.nerv import build_generator
from camfields.tasks import nerf, video
from camfields.tasks.image import resolve_config
from camfields.tasks.video.sizing import size_for_params


@pytest.mark.parametrize("preset", sorted(p.stem for p in (SCENES_DIR / "image").glob("*.toml")))
def test_every_image_preset_loads_for_every_model(preset):
    for model in ("ffn", "cam", "ngp"):
        cfg = resolve_config(model, f"image/{preset}")
        assert cfg.model == model and cfg.train.steps > 0


@pytest.mark.parametrize("preset", sorted(p.stem for p in (SCENES_DIR / "video").glob("*.toml")))
def test_every_video_preset_sizes_every_model_to_its_target(preset):
    for model in video.PRESETS:
        cfg = video.resolve_config(model, f"video/{preset}")
        gen = size_for_params(cfg.generator, cfg.height, cfg.width, cfg.target_params, cfg.scale_frame_grids)
        params = count_parameters(build_generator(gen, cfg.height, cfg.width))
        assert 0.8 * cfg.target_params < params <= cfg.target_params, (model, params)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (SCENES_DIR / "nerf").glob("*.toml")))
def test_every_nerf_preset_loads_for_every_model_with_its_ray_space(preset):
    cfg = None
    for model in nerf.PRESETS:
        cfg = nerf.resolve_config(model, config=f"nerf/{preset}")
        assert cfg.model == model and cfg.train.steps > 0
    # the ray space and the box go together (validate checks them): NDC for LLFF, contracted for 360 scenes
    text = (SCENES_DIR / "nerf" / f"{preset}.toml").read_text()
    forward = preset.startswith("llff") or 'extends = "nerf/llff"' in text
    unbounded = preset in ("mipnerf360", "unbounded_cpu") or 'extends = "nerf/mipnerf360"' in text
    assert cfg.rays.space == ("ndc" if forward else "contract" if unbounded else "world")


def test_layers_apply_in_order(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "ffn"\nmode = "generalization"\n[train]\nsteps = 7\nlr = 0.01\n[field]\nhidden = 32\n')
    cfg = resolve_config(None, str(path), {"train": {"steps": 9}})
    assert (cfg.model, cfg.mode, cfg.train.steps, cfg.train.lr, cfg.field.hidden) == (
        "ffn",
        "generalization",
        9,
        0.01,
        32,
    )
    assert cfg.field.modulation.grid == "none" and cfg.field.encoding.kind == "fourier"
    cam = resolve_config("cam", str(path))
    assert cam.field.modulation.grid == "dense" and cam.field.norm == "layer"


@pytest.mark.parametrize(
    "text,message",
    [
        ("[train]\nstpes = 3\n", r"unknown config key 'train.stpes'; did you mean 'train.steps'"),
        ("[field.modulation]\ngird = 'dense'\n", r"unknown config key 'field.modulation.gird'"),
        ("[train]\nsteps = 'many'\n", r"train.steps must be int, got 'many'"),
        ("[train]\nlr = 'fast'\n", r"train.lr must be float, got 'fast'"),
        ("[train]\nadam_betas = 'high'\n", r"train.adam_betas must be list\[float\], got 'high'"),
        ("mode = 'memorize'\n", r"unknown mode 'memorize'"),
        ("[train]\nschedule = 'linear'\n", r"unknown learning-rate schedule 'linear'"),
        ("model = 'siren'\n", r"unknown model 'siren'; choose one of ffn, cam, ngp"),
        ("[train\nsteps = 3\n", r"is not valid TOML"),
        ("train = 5\n", r"'train' must be a table of settings, got 5"),
        ("[models]\ncam = 5\n", r"\[models\] must hold one table of settings per model"),
        ("[models.cam]\nfield = 'big'\n", r"'field' must be a table of settings, got 'big'"),
        ("[field]\nhidden = 100_000_000\n", r"hidden must be from 1 to 16,384, got 100,000,000"),
        ("[field.modulation]\ngrid = 'dense'\nresolution = [8192, 8192]\n", r"more than 16,777,216 nodes"),
        ("[field.encoding.hash]\nlog2_table_size = 40\n", r"encoding.hash.log2_table_size must be from 1 to 26"),
        ("[train]\nlr = nan\n", r"must be finite numbers"),
        ("[train]\nsteps = 1_000_000_000_000\n", r"train.steps must be from 1 to 1,000,000,000"),
        ("[train]\nseed = 100_000_000_000_000_000_000_000\n", r"train.seed must be from 0 to 2\*\*63 - 1"),
        ("[train]\nadam_betas = [2, 5]\n", r"train.adam_betas must be two numbers in \[0, 1\)"),
        ("[train]\nadam_eps = -1\n", r"train.adam_eps must be positive"),
        ("[train]\ndecay = -0.1\n", r"train.decay and train.final_lr_ratio must be in \(0, 1\]"),
        ("[train]\nmilestones = [0.75, 0.5]\n", r"train.milestones must be increasing fractions"),
        ("[train]\nmilestones = [-0.5]\n", r"train.milestones must be increasing fractions"),
    ],
)
def test_config_mistakes_are_one_clear_sentence(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CamfieldsError, match=message) as info:
        resolve_config(None, str(path))
    assert "\n" not in str(info.value)


def test_a_scalar_for_a_table_is_refused_also_under_command_line_overrides(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("train = 5\n")
    with pytest.raises(CamfieldsError, match=r"'train' must be a table of settings, got 5"):
        resolve_config(None, str(path), {"train": {"steps": 3}})  # the override used to replace the 5 silently


def test_a_scene_background_outside_rgb_is_refused(tmp_path):
    from camfields.tasks.nerf import resolve_config as nerf_config

    path = tmp_path / "bg.toml"
    path.write_text("background = [2.0, 0, 0]\n")
    with pytest.raises(CamfieldsError, match=r"background must be RGB in \[0, 1\]"):
        nerf_config("ngp", str(path))


def test_missing_config_file_is_a_clear_error():
    with pytest.raises(CamfieldsError, match="neither a file nor a preset"):
        resolve_config("cam", "image/does_not_exist")


def test_a_video_config_cannot_turn_a_model_into_another(tmp_path):
    shared = tmp_path / "shared.toml"
    shared.write_text('extends = "video/bunny_cpu"\n[generator]\ntime_grid = 2\n')
    assert video.resolve_config("ffnerv_cam", str(shared)).generator.time_grid == 2  # fewer nodes: still CAM
    with pytest.raises(CamfieldsError, match=r"make model 'ffnerv' another model .* choose --model ffnerv_cam") as info:
        video.resolve_config("ffnerv", str(shared))  # would silently fit CAM under the plain model's name
    assert str(shared) in str(info.value) and "\n" not in str(info.value)
    per_model = tmp_path / "per_model.toml"
    per_model.write_text('extends = "video/bunny_cpu"\n[models.ffnerv_cam.generator]\ntime_grid = 2\n')
    assert video.resolve_config("ffnerv", str(per_model)).generator.time_grid == 0
    assert video.resolve_config("ffnerv_cam", str(per_model)).generator.time_grid == 2
    for model, generator, fix in [
        ("ffnerv_cam", {"time_grid": 0}, "ffnerv"),
        ("nerv", {"embedding": "grids"}, "ffnerv"),
        ("cam", {"embedding": "grids"}, "ffnerv_cam"),
    ]:
        with pytest.raises(CamfieldsError, match=f"choose --model {fix},"):
            video.resolve_config(model, overrides={"generator": generator})
    with pytest.raises(CamfieldsError, match="unknown embedding 'fourier'"):
        video.resolve_config("nerv", overrides={"generator": {"embedding": "fourier"}})
