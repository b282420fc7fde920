"""NeRF: samplers, model presets, and fits of a tiny synthetic scene rendered analytically."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO

from camfields import CAMMLP, CamfieldsError, PlaneGrid, SinusoidalEncoding
from camfields.modules.radiance import RadianceField, direction_angles
from camfields.render import OccupancyGrid, camera_rays
from camfields.render.radiance import RayConditioned, render_rays
from camfields.render.rays import look_at, orbit_poses
from camfields.render.sampling import HierarchicalSampler, OccupancySampler, inverse_transform, stratified_edges
from camfields.tasks.nerf import PRESETS, fit_nerf, resolve_config
from camfields.tasks.radiance import (
    NeRFModel,
    OccupancyRefresh,
    RayObjective,
    Rays,
    SamplerConfig,
    build_radiance_field,
)
from camfields.training import TrainConfig, train

AABB = torch.tensor([-1.0, -1, -1, 1, 1, 1])
WHITE = torch.ones(3)
FOCAL = 22.0


class Sphere:
    """Ground truth: a ball of radius 0.6 and density 30, coloured by position."""

    def density(self, points):
        return (points.norm(dim=-1) < 0.6).float() * 30.0

    def __call__(self, points, directions):
        return self.density(points), ((points + 1) / 2).clamp(0, 1)


def ring_poses(views: int, offset: float = 0.0) -> torch.Tensor:
    angles = [2 * math.pi * (k + offset) / views for k in range(views)]
    return torch.stack([look_at(torch.tensor([2.5 * math.cos(a), 2.5 * math.sin(a), 0.8])) for a in angles])


def render_truth(poses: torch.Tensor, size: int) -> torch.Tensor:
    """Images (V, size, size, 3) of the sphere, ray-marched finely through the whole box."""
    sampler = OccupancySampler(OccupancyGrid(AABB, resolution=8), 0.01, stop_transmittance=0)
    images = []
    for pose in poses:
        o, d = camera_rays(pose, size, size, FOCAL * size / 16)
        with torch.no_grad():
            images.append(render_rays(Sphere(), sampler, o, d, WHITE).result.color.reshape(size, size, 3))
    return torch.stack(images)


def synthetic_rays(views: int = 8, size: int = 16) -> Rays:
    poses = ring_poses(views)
    pairs = [camera_rays(p, size, size, FOCAL) for p in poses]
    colors = render_truth(poses, size).reshape(-1, 3)
    return Rays(torch.cat([o for o, _ in pairs]), torch.cat([d for _, d in pairs]), colors)


def write_blender_scene(root, size: int = 16) -> None:
    """The sphere scene in the Blender format: 8 training and 2 validation views (RGBA PNGs)."""
    for split, poses in (("train", ring_poses(8)), ("val", ring_poses(2, offset=0.25))):
        (root / split).mkdir(parents=True)
        images = render_truth(poses, size)
        frames = []
        for k, (pose, image) in enumerate(zip(poses, images)):
            # white background: alpha where the ball is, colour un-composited
            alpha = (1 - image.min(dim=-1).values).clamp(0, 1)[..., None]
            rgba = torch.cat([image, torch.where(alpha > 0.02, 1.0, 0.0)], dim=-1)
            iio.imwrite(root / split / f"r_{k}.png", (rgba.numpy() * 255).round().astype(np.uint8))
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": pose.tolist()})
        angle = 2 * math.atan(0.5 * size / (FOCAL * size / 16))
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))


def test_direction_angles_cover_minus_one_to_one():
    dirs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 1e-9, 0], [0, 0, 1.0], [0, 0, -1.0]])
    torch.testing.assert_close(
        direction_angles(dirs), torch.tensor([[0.0, 0], [0.5, 0], [1.0, 0], [0, 1.0], [0, -1.0]]), atol=1e-6, rtol=0
    )


def test_orbit_poses_circle_the_cameras_and_look_at_the_origin():
    poses = orbit_poses(ring_poses(8), 12)
    centres = poses[:, :3, 3]
    torch.testing.assert_close(centres[:, :2].norm(dim=-1), torch.full((12,), 2.5))
    torch.testing.assert_close(centres[:, 2], torch.full((12,), 0.8))
    # the camera's viewing axis (-z) points at the origin
    torch.testing.assert_close(-poses[:, :3, 2], -centres / centres.norm(dim=-1, keepdim=True))


def test_stratified_edges_stay_sorted_inside_the_interval():
    t_near, t_far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.5])
    fixed = stratified_edges(t_near, t_far, 4)
    torch.testing.assert_close(fixed[0], torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    jittered = stratified_edges(t_near, t_far, 4, torch.Generator().manual_seed(1))
    assert torch.equal(jittered[:, 0], t_near) and torch.equal(jittered[:, -1], t_far)
    assert (jittered[:, 1:] >= jittered[:, :-1]).all() and not torch.equal(jittered, fixed)


def test_inverse_transform_sampling_follows_the_weights():
    edges = torch.linspace(0.0, 4.0, 5).expand(2, 5)
    weights = torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    drawn = inverse_transform(edges, weights, 1000, torch.Generator().manual_seed(0))
    in_third_bin = ((drawn[0] >= 2.0) & (drawn[0] <= 3.0)).float().mean()
    assert in_third_bin > 0.99  # all the mass is in [2, 3]
    assert abs(drawn[1].mean().item() - 2.0) < 0.1  # uniform over [0, 4]
    quantiles = inverse_transform(edges[:1], weights[:1], 4)
    assert ((quantiles >= 2.0) & (quantiles <= 3.0)).all()


def test_hierarchical_sampler_concentrates_samples_at_the_surface():
    origins = torch.tensor([[-3.0, 0.0, 0.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0]])
    samples = HierarchicalSampler(AABB, coarse=16, fine=64).sample(RayConditioned(Sphere()), origins, dirs)
    assert len(samples.t_starts) == 16 + 64
    assert torch.equal(samples.t_ends[:-1], samples.t_starts[1:])  # contiguous, sorted intervals
    mids = 0.5 * (samples.t_starts + samples.t_ends)
    # the ray enters the ball at t = 2.4: most fine samples land just behind the entry
    near_entry = ((mids > 2.3) & (mids < 2.7)).sum()
    assert near_entry > 40
    # and the render through the field matches the occupancy-marched ground truth
    color = render_rays(Sphere(), HierarchicalSampler(AABB, 32, 64), origins, dirs, WHITE).result.color
    truth = render_rays(Sphere(), OccupancySampler(OccupancyGrid(AABB, 8), 0.001, 0), origins, dirs, WHITE)
    torch.testing.assert_close(color, truth.result.color, atol=0.02, rtol=0)


def test_marching_jitter_keeps_samples_inside_the_box_and_ordered():
    grid = OccupancyGrid(AABB, resolution=8)
    origins = torch.tensor([[-3.0, 0.1, 0.2], [0.0, -3.0, 0.0]])
    dirs = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2]]), dim=-1)
    plain = grid.march(origins, dirs, 0.1)
    jittered = grid.march(origins, dirs, 0.1, generator=torch.Generator().manual_seed(0))
    for samples in (plain, jittered):
        for ray in range(2):
            s = samples.t_starts[samples.ray_indices == ray]
            e = samples.t_ends[samples.ray_indices == ray]
            torch.testing.assert_close(e[:-1], s[1:])
            assert (e > s).all()
    # both cover the same stretch of each ray, cut at different places
    for ray in range(2):
        a, b = (x.t_starts[x.ray_indices == ray] for x in (plain, jittered))
        assert a[0] == b[0] and not torch.equal(a, b)


def test_partial_occupancy_update_only_touches_drawn_cells():
    grid = OccupancyGrid(AABB, resolution=8)
    grid.density.fill_(5.0)
    grid.update(lambda p: torch.zeros(len(p)), step=0.1, generator=torch.Generator().manual_seed(0), fraction=0.25)
    changed = (grid.density != 5.0).float().mean()
    assert 0.05 < changed < 0.3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_model_preset_builds_and_renders(name):
    cfg = resolve_config(name, overrides={"field": {"trunk": {"encoding": {"hash": {"log2_table_size": 12}}}}})
    cfg.field.trunk.modulation.resolution = [8] * len(cfg.field.trunk.modulation.resolution)
    model = NeRFModel(build_radiance_field(cfg.field, AABB), cfg.sampler)
    trunk_grid, head_grid = model.field.trunk.modulation, model.field.head.modulation
    assert (trunk_grid is not None) == (name in ("vanilla_cam", "vanilla_dirtrunk"))
    assert model.field.view_dependent_density == (name == "vanilla_dirtrunk")
    assert (head_grid is not None) == (name in ("vanilla_dircam", "ngp_cam"))
    assert (model.grid is None) == name.startswith("vanilla")
    o, d = camera_rays(ring_poses(1)[0], 4, 4, 3.0)
    color = model.render(o, d, WHITE).color
    assert color.shape == (16, 3) and torch.isfinite(color).all()


def test_config_file_applies_per_model_tables_and_rejects_unknown_models(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("downscale = 3\n[models.ngp.train]\nsteps = 7\n[models.vanilla.train]\nsteps = 9\n")
    assert resolve_config("ngp", str(path)).train.steps == 7
    cfg = resolve_config("vanilla", str(path))
    assert cfg.train.steps == 9 and cfg.downscale == 3
    path.write_text("[models.nerfacto.train]\nsteps = 7\n")
    with pytest.raises(CamfieldsError, match="names no model"):
        resolve_config("ngp", str(path))
    with pytest.raises(CamfieldsError, match="sampler"):
        resolve_config("ngp", overrides={"sampler": {"kind": "proposal"}})


def tiny_field() -> RadianceField:
    trunk = CAMMLP(
        3, 1 + 16, hidden=64, depth=3, encoding=SinusoidalEncoding(3, 6), grid=lambda f: PlaneGrid((16, 16, 16), f)
    )
    head = CAMMLP(16 + SinusoidalEncoding(3, 2).out_dim, 3, hidden=32, depth=1, output_activation="sigmoid")
    return RadianceField(trunk, head, SinusoidalEncoding(3, 2), AABB)


@pytest.mark.slow
def test_cam_radiance_field_fits_a_tiny_scene(tmp_path):
    rays = synthetic_rays()
    assert 0.1 < (rays.colors < 0.99).float().mean() < 0.9  # the ball covers part of every image
    torch.manual_seed(0)
    sampler = SamplerConfig(steps_per_diagonal=70, grid_resolution=16, warmup=40, update_every=8)
    model = NeRFModel(tiny_field(), sampler)
    result = train(
        model,
        RayObjective(rays, batch_size=256, background=WHITE),
        TrainConfig(steps=120, lr=1e-2, schedule="cosine", final_lr_ratio=0.1),
        tmp_path,
        progress=False,
        tensorboard=False,
        hooks=[OccupancyRefresh()],
    )
    # measured when written: about 33 dB (the untrained field: about 10 dB)
    assert result.evaluation.metrics["psnr"] > 28, result.evaluation.metrics
    # the occupancy grid learned where the ball is: cells far outside it are empty
    centres = model.grid.cell_centers()
    assert not model.grid.occupied[centres.norm(dim=-1) > 1.0].all()
    assert model.grid.occupied[centres.norm(dim=-1) < 0.4].all()


@pytest.mark.slow
def test_fit_nerf_writes_views_video_metrics_and_resumes(tmp_path):
    write_blender_scene(tmp_path / "sphere")
    overrides = {
        "downscale": 1,
        "aabb": [-1.0, -1, -1, 1, 1, 1],
        "turntable_frames": 4,
        "field": {"trunk": {"encoding": {"hash": {"log2_table_size": 12, "levels": 8}}}},
        "sampler": {"steps_per_diagonal": 64, "grid_resolution": 16, "warmup": 20, "update_every": 8},
        "train": {"steps": 60, "batch_size": 256, "checkpoint_every": 30, "lr": 1e-2},
    }
    cfg = resolve_config("ngp_cam", overrides=overrides)
    out = tmp_path / "run"
    metrics = fit_nerf(tmp_path / "sphere", cfg, out, device="cpu", progress=False)
    assert metrics["psnr"] > 20 and metrics["views"] == 2 and metrics["split"] == "val"
    assert metrics["psnr_8bit"] > metrics["psnr"] - 1.0 and metrics["size_mb_8bit"] < metrics["size_mb"] / 3
    assert set(metrics["per_view"]) == {"r_0", "r_1"} and metrics["lpips"] is None or metrics["lpips"] >= 0
    assert (out / "eval_val" / "r_1.png").exists() and (out / "turntable.mp4").exists()
    assert len(iio.imread(out / "turntable.mp4", plugin="FFMPEG")) == 4
    assert json.loads((out / "metrics.json").read_text())["psnr"] == pytest.approx(metrics["psnr"])
    with pytest.raises(CamfieldsError, match="already holds a fit"):
        fit_nerf(tmp_path / "sphere", cfg, out, device="cpu", progress=False)
    again = fit_nerf(tmp_path / "sphere", cfg, out, device="cpu", resume=True, progress=False)
    assert again["psnr"] == pytest.approx(metrics["psnr"])  # finished fit: evaluation only


def test_every_phase_after_training_shows_progress(tmp_path, capsys):
    """The evaluation views, the quantized pass and the turntable each show a progress bar."""
    write_blender_scene(tmp_path / "sphere")
    overrides = {
        "downscale": 1,
        "aabb": [-1.0, -1, -1, 1, 1, 1],
        "turntable_frames": 2,
        "field": {"trunk": {"encoding": {"hash": {"log2_table_size": 10, "levels": 4}}}},
        "sampler": {"steps_per_diagonal": 16, "grid_resolution": 8},
        "train": {"steps": 2, "batch_size": 64},
    }
    fit_nerf(tmp_path / "sphere", resolve_config("ngp", overrides=overrides), tmp_path / "run", "cpu", progress=True)
    shown = capsys.readouterr().err
    decoded = "sphere ngp: val views, decoded from 8-bit scene.camf"
    for label in ("sphere ngp: val views", decoded, "sphere ngp: turntable"):
        assert f"{label}: 100%" in shown, shown[-2000:]
    fit_nerf(tmp_path / "sphere", resolve_config("ngp", overrides=overrides), tmp_path / "quiet", "cpu", progress=False)
    assert "views" not in capsys.readouterr().err


def test_fit_nerf_script_reports_a_missing_scene(tmp_path, capsys):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fit_nerf.py"),
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: scene folder {tmp_path / 'nope'} does not exist or is not a folder"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_nerf_fit_extends_with_more_steps(tmp_path):
    import json

    from test_golden import TINY_SCENE

    write_blender_scene(tmp_path / "sphere")
    overrides = {**TINY_SCENE, "downscale": 1, "compression": {"bits": 0}}
    short = resolve_config("ngp_cam", overrides=overrides)
    fit_nerf(tmp_path / "sphere", short, tmp_path / "run", "cpu", progress=False)
    longer = resolve_config("ngp_cam", overrides={**overrides, "train": {**TINY_SCENE["train"], "steps": 20}})
    metrics = fit_nerf(tmp_path / "sphere", longer, tmp_path / "run", "cpu", resume=True, progress=False)
    assert metrics["resumed_from"] == 12 and metrics["steps"] == 20
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["task"] == "nerf" and recorded["fitted_data"]["files"] > 1
    assert recorded["train"]["steps"] == 20 and recorded["train"]["schedule_steps"] == 12  # the 12-step plan's span
