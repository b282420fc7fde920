"""Dynamic scenes: loaders and their errors, time modulation, deformation, and a fit of a moving ball."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import shared_data
from test_nerf import AABB, FOCAL, ring_poses

from camfields import CAMMLP, CamfieldsError, DenseGrid, SinusoidalEncoding
from camfields.io.dynamic import load_dynamic, load_dynamic_npz
from camfields.metrics import psnr
from camfields.modules.radiance import RadianceField
from camfields.render import OccupancyGrid, camera_rays
from camfields.render.radiance import render_rays
from camfields.render.sampling import OccupancySampler
from camfields.tasks.dynamic import PRESETS, fit_dynamic, resolve_config
from camfields.tasks.nerf import NERF
from camfields.tasks.nerf import resolve_config as resolve_nerf_config
from camfields.tasks.radiance import (
    NeRFModel,
    OccupancyRefresh,
    RayObjective,
    Rays,
    SamplerConfig,
    SceneData,
    build_radiance_field,
)
from camfields.training import TrainConfig, train
from camfields.training.fit import run_fit

BLACK = torch.zeros(3)
#: a K-planes CAM field small enough to fit the moving ball in seconds
SMALL_KPLANES = {
    "trunk": {
        "hidden": 64,
        "depth": 3,
        "skips": [],
        "encoding": {"num_freqs": 4},
        "modulation": {"resolution": [16, 16, 16, 8]},
    },
    "head": {"hidden": 32},
    "features": 16,
}


class MovingBall:
    """Ground truth: a ball of radius 0.45 whose centre moves from x = -0.4 (t = 0) to x = +0.4 (t = 1)."""

    def centre(self, times):
        return torch.stack([-0.4 + 0.8 * times, torch.zeros_like(times), torch.zeros_like(times)], dim=-1)

    def density(self, points, times):
        return ((points - self.centre(times)).norm(dim=-1) < 0.45).float() * 30.0

    def __call__(self, points, directions, times):
        return self.density(points, times), ((points + 1) / 2).clamp(0, 1)


def moving_scene(views: int = 12, size: int = 16):
    """Images (V, S, S, 3) of the ball on black, poses (V, 4, 4) and times (V,) spread over [0, 1]."""
    poses = ring_poses(views)
    times = torch.linspace(0, 1, views)
    sampler = OccupancySampler(OccupancyGrid(AABB, resolution=8), 0.01, stop_transmittance=0)
    images = []
    for pose, t in zip(poses, times):
        o, d = camera_rays(pose, size, size, FOCAL)
        with torch.no_grad():
            result = render_rays(MovingBall(), sampler, o, d, BLACK, times=t.expand(len(o)))
        images.append(result.result.color.reshape(size, size, 3))
    return torch.stack(images), poses, times


def write_npz(path, with_split=True, **replace):
    images, poses, times = moving_scene()
    data = {"images": images.numpy(), "poses": poses.numpy(), "times": times.numpy(), "focal": np.float64(FOCAL)}
    if with_split:
        data["split"] = np.array(["train"] * 10 + ["val"] * 2)
    data.update(replace)
    data = {k: v for k, v in data.items() if v is not None}
    np.savez(path, **data)
    return path


def test_npz_loader_reads_splits_times_and_scales_the_focal(tmp_path):
    path = write_npz(tmp_path / "s.npz")
    train_split = load_dynamic(path, "train")
    val = load_dynamic(path, "val", downscale_factor=2)
    assert train_split.images.shape == (10, 16, 16, 3) and val.images.shape == (2, 8, 8, 3)
    assert val.focal == pytest.approx(FOCAL / 2) and val.names == ["val_010", "val_011"]
    torch.testing.assert_close(val.times, torch.linspace(0, 1, 12)[10:])
    everything = load_dynamic(write_npz(tmp_path / "all.npz", with_split=False), "train")
    assert len(everything.times) == 12  # no split array: all training data


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"poses": np.zeros((3, 4, 4))}, "poses must be"),
        ({"times": np.linspace(0, 2, 12)}, r"bad.npz frame 6: time must be a finite number in \[0, 1\], got 1.09"),
        ({"times": np.zeros(5)}, "5 times for 12 images"),
        ({"focal": None}, "lacks focal"),
        ({"images": np.zeros((12, 16, 16))}, "images must be"),
        ({"split": np.array(["train"] * 12)}, "no 'val' images"),
    ],
)
def test_npz_loader_errors(tmp_path, replace, message):
    path = write_npz(tmp_path / "bad.npz", **replace)
    with pytest.raises(CamfieldsError, match=message):
        load_dynamic(path, "val")


def with_value(key, frame, value):
    """A ``write_npz`` replacement made when called: the moving-ball ``key`` array with ``value`` all over ``frame``."""

    def replace():
        images, poses, times = moving_scene()
        array = {"images": images, "poses": poses, "times": times}[key].numpy()
        array[frame] = value
        return {key: array}

    return replace


@pytest.mark.parametrize(
    "replace, message",
    [
        (with_value("poses", 3, np.nan), "bad.npz frame 3: pose holds NaN or infinite values"),
        (with_value("poses", 3, np.inf), "bad.npz frame 3: pose holds NaN or infinite values"),
        (with_value("images", 2, np.nan), "bad.npz frame 2: the image holds NaN or infinite pixels"),
        (with_value("times", 4, np.nan), "bad.npz frame 4: time must be a finite number in"),
        ({"focal": np.float64(np.inf)}, "bad.npz: focal must be one finite positive number of pixels, got inf"),
        ({"focal": np.array("wide")}, "bad.npz: focal must hold numbers, got an array of <U4"),
        ({"poses": np.full((12, 4, 4), "0")}, "bad.npz: poses must hold numbers, got an array of <U1"),
        ({"times": np.full(12, "now")}, "bad.npz: times must hold numbers, got an array of <U3"),
        ({"images": np.zeros((0, 16, 16, 3))}, r"bad.npz: images must be \(N, H, W, 3\) with N, H, W > 0"),
        ({"poses": None}, "bad.npz lacks poses; a dynamic .npz needs images, poses, times, focal"),
    ],
    ids=[
        "nan pose",
        "inf pose",
        "nan pixel",
        "nan time",
        "inf focal",
        "string focal",
        "string poses",
        "string times",
        "no images",
        "missing key",
    ],
)
def test_npz_values_are_checked_naming_the_file_and_frame(tmp_path, replace, message):
    path = write_npz(tmp_path / "bad.npz", **(replace() if callable(replace) else replace))
    with pytest.raises(CamfieldsError, match=message):
        load_dynamic(path, "val")


def test_npz_3x4_poses_get_the_row_0_0_0_1(tmp_path):
    _, poses, _ = moving_scene()
    scene = load_dynamic(write_npz(tmp_path / "s.npz", poses=poses[:, :3].numpy()), "val")
    torch.testing.assert_close(scene.poses, poses[10:])


def test_unreadable_or_missing_npz(tmp_path):
    with pytest.raises(CamfieldsError, match="does not exist"):
        load_dynamic_npz(tmp_path / "none.npz", "train")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(write_npz(tmp_path / "ok.npz").read_bytes()[:300])
    with pytest.raises(CamfieldsError, match="not a readable .npz"):
        load_dynamic(broken, "train")


def write_dnerf_folder(root, times=(0.0, 0.5, 1.0)):
    """A D-NeRF training split in ``root``: one white 4x4 image per time; returns its transforms dict."""
    (root / "train").mkdir(parents=True)
    frames = []
    for k, time in enumerate(times):
        iio.imwrite(root / "train" / f"r_{k}.png", np.full((4, 4, 4), 255, dtype=np.uint8))
        frames.append({"file_path": f"./train/r_{k}", "transform_matrix": np.eye(4).tolist(), "time": time})
    meta = {"camera_angle_x": 0.7, "frames": frames}
    (root / "transforms_train.json").write_text(json.dumps(meta))
    return meta


def test_dnerf_folder_needs_a_time_on_every_frame(tmp_path):
    root = tmp_path / "scene"
    meta = write_dnerf_folder(root)
    frames = meta["frames"]
    torch.testing.assert_close(load_dynamic(root, "train").times, torch.tensor([0.0, 0.5, 1.0]))
    del frames[1]["time"]
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(CamfieldsError, match="2 of 3 frames have a 'time'"):
        load_dynamic(root, "train")
    for frame in frames:
        frame.pop("time", None)
    (root / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(CamfieldsError, match="not a dynamic scene"):
        load_dynamic(root, "train")


@pytest.mark.parametrize(
    "time, message",
    [
        (math.nan, "time must be a finite number in"),
        (True, "'time' must be a number, got True"),
        ("0.5", "'time' must be a number"),
    ],
    ids=["nan", "bool", "string"],
)
def test_dnerf_folder_times_are_checked_naming_the_frame(tmp_path, time, message):
    root = tmp_path / "scene"
    write_dnerf_folder(root, (0.0, time, 1.0))
    with pytest.raises(CamfieldsError, match=f"transforms_train.json frame 1: {message}"):
        load_dynamic(root, "train")


def time_field(**kwargs) -> RadianceField:
    trunk = CAMMLP(3, 1 + 8, hidden=16, depth=2, encoding=SinusoidalEncoding(3, 2), grid=lambda f: DenseGrid((5,), f))
    head = CAMMLP(8 + 3, 3, hidden=8, depth=1, output_activation="sigmoid")
    return RadianceField(trunk, head, torch.nn.Identity(), AABB, trunk_modulation="time", **kwargs)


def test_time_grid_reads_its_first_and_last_node_at_t_0_and_t_1():
    field = time_field()
    table = field.trunk.modulation.grid.table
    with torch.no_grad():
        table.copy_(torch.randn_like(table))
    points = torch.rand(32, 3) * 2 - 1
    ends = {0.0: 0, 1.0: 4}
    densities = {t: field.density(points, torch.full((32,), t)) for t in ends}
    for t, node in ends.items():
        with torch.no_grad():
            saved = table.clone()
            table.copy_(saved[node].expand_as(saved))  # every node holds the end node's values
            constant = field.density(points, torch.full((32,), t))
            table.copy_(saved)
        torch.testing.assert_close(densities[t], constant)
    assert not torch.allclose(densities[0.0], densities[1.0])


def test_deformation_moves_the_canonical_field_by_its_offset_at_t():
    # deformation(x, s) = (0.25 * s, 0, 0): a linear 1-layer MLP reading the time coordinate
    deformation = CAMMLP(4, 3, hidden=1, depth=1, activation="none")
    field = time_field(deformation=deformation)
    with torch.no_grad():
        deformation.hidden_layers[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
        deformation.hidden_layers[0].bias.zero_()
        deformation.output_layer.weight.copy_(torch.tensor([[0.25], [0.0], [0.0]]))
    points = torch.rand(64, 3) * 1.2 - 0.6
    for t in (0.0, 0.3, 1.0):
        times = torch.full((64,), t)
        shift = torch.tensor([0.25 * (2 * t - 1), 0.0, 0.0])  # normalised units; the box [-1, 1] is the world
        moved = field.density(points, times)
        field.deformation = None
        expected = field.density(points + shift, times)
        field.deformation = deformation
        torch.testing.assert_close(moved, expected)


def test_a_static_field_refuses_times_data_and_a_dynamic_one_needs_times(tmp_path):
    field = time_field()
    with pytest.raises(CamfieldsError, match="depends on time"):
        field.density(torch.zeros(2, 3))
    images, poses, times = moving_scene(4, 8)
    from camfields.io.blender import CameraSplit

    split = CameraSplit(images, poses, FOCAL / 2, ["a", "b", "c", "d"], times)
    with pytest.raises(CamfieldsError, match="needs images with no times"):
        run_fit(NERF, resolve_nerf_config("ngp"), SceneData(split, split, "ball"), tmp_path / "o", torch.device("cpu"))
    assert not (tmp_path / "o").exists()  # nothing written


def test_every_dynamic_preset_builds_and_renders_at_a_time():
    for name in PRESETS:
        cfg = resolve_config(name, overrides={"field": {"trunk": {"encoding": {"hash": {"log2_table_size": 12}}}}})
        cfg.field.trunk.modulation.resolution = [4] * len(cfg.field.trunk.modulation.resolution)
        model = NeRFModel(build_radiance_field(cfg.field, AABB), cfg.sampler)
        assert model.field.dynamic, name
        o, d = camera_rays(ring_poses(1)[0], 4, 4, 3.0)
        color = model.render(o, d, BLACK, times=torch.full((16,), 0.5)).color
        assert torch.isfinite(color).all(), name


@pytest.mark.slow
def test_time_cam_fits_a_moving_ball_and_its_occupancy_covers_every_time(tmp_path):
    images, poses, times = moving_scene()
    pairs = [camera_rays(p, 16, 16, FOCAL) for p in poses]
    rays = Rays(
        torch.cat([o for o, _ in pairs]),
        torch.cat([d for _, d in pairs]),
        images.reshape(-1, 3),
        times.repeat_interleave(256),
    )
    cfg = resolve_config("kplanes_cam", overrides={"field": SMALL_KPLANES})
    torch.manual_seed(0)
    sampler = SamplerConfig(steps_per_diagonal=70, grid_resolution=16, warmup=40, update_every=8)
    model = NeRFModel(build_radiance_field(cfg.field, AABB), sampler)
    result = train(
        model,
        RayObjective(rays, batch_size=256, background=BLACK),
        TrainConfig(steps=150, lr=1e-2, schedule="cosine", final_lr_ratio=0.1),
        tmp_path,
        progress=False,
        tensorboard=False,
        hooks=[OccupancyRefresh()],
    )
    # measured when written: about 27 dB (the untrained field: about 12 dB)
    assert result.evaluation.metrics["psnr"] > 23, result.evaluation.metrics
    # the grid keeps the ball's cells at both ends of its path
    centres = model.grid.cell_centers()
    for t in (0.0, 1.0):
        inside = (centres - MovingBall().centre(torch.tensor(t))).norm(dim=-1) < 0.25
        assert model.grid.occupied[inside].all(), t


@pytest.mark.slow
def test_fit_dynamic_writes_metrics_views_and_a_time_sweep(tmp_path):
    path = write_npz(tmp_path / "ball.npz")
    overrides = {
        "aabb": [-1.0, -1, -1, 1, 1, 1],
        "background": [0.0, 0.0, 0.0],
        "turntable_frames": 3,
        "field": SMALL_KPLANES,
        "sampler": {"steps_per_diagonal": 64, "grid_resolution": 16, "warmup": 20, "update_every": 8},
        "train": {"steps": 80, "batch_size": 256, "lr": 1e-2},
    }
    cfg = resolve_config("kplanes_cam", overrides=overrides)
    metrics = fit_dynamic(path, cfg, tmp_path / "run", "cpu", progress=False)
    assert metrics["views"] == 2 and set(metrics["per_view"]) == {"val_010", "val_011"}
    val = load_dynamic(path, "val")
    background_only = psnr(torch.zeros_like(val.images), val.images)
    assert metrics["psnr"] > background_only + 3, (metrics["psnr"], background_only)
    assert math.isfinite(metrics["psnr_8bit"])
    assert (tmp_path / "run" / "eval_val" / "val_011.png").exists()
    assert len(iio.imread(tmp_path / "run" / "turntable.mp4", plugin="FFMPEG")) == 3


def test_tiny_dnerf_lego_loads():
    path = shared_data("dynamic/tiny_dnerf_lego_trainval.npz")
    train_split, val = load_dynamic(path, "train"), load_dynamic(path, "val")
    assert train_split.images.shape == (50, 100, 100, 3) and val.images.shape == (11, 100, 100, 3)
    assert val.times[0] == 0.0 and val.times[-1] == 1.0
