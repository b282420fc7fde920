"""Unbounded scenes (issue 30, item 2): the scene contraction, cone marching and disparity spacing along
whole rays, auto-centring of the poses, the ray-space switch and scene files that keep both; a tiny 360
capture (a sphere with a sky all around, seen by a ring of cameras, recorded under a motion and a
scale, written as a nerfstudio folder) fitted with contracted rays and with world rays."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import shared_data
from test_captures import write_nerfstudio
from test_scene_codec import forged

from camfields import CamfieldsError
from camfields.codec.scene import read_scene, render_view
from camfields.commands.decompress import DecodeOptions, decompress
from camfields.io.centring import SceneFrame, centred_frame, rotation_to_z
from camfields.metrics import psnr
from camfields.render import camera_rays
from camfields.render.contraction import CONTRACTED_BOX, Contraction, contract
from camfields.render.model import NeRFModel, RaysConfig, SamplerConfig
from camfields.render.occupancy import OccupancyGrid, march_intervals
from camfields.render.rays import look_at
from camfields.render.sampling import HierarchicalSampler, spread, unspread
from camfields.tasks import nerf


def test_contraction_keeps_the_unit_cube_and_pulls_the_rest_into_the_cube_of_side_4():
    inside = torch.rand(100, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(contract(inside), inside)
    directions = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    scales = torch.tensor([1.0, 1.5, 3.0, 10.0, 1e6])
    for d in directions:
        points = d / d.abs().max() * scales[:, None]  # max norm = scales
        norms = contract(points).abs().amax(dim=-1)
        torch.testing.assert_close(norms, 2 - 1 / scales)  # 1, 1.33, 1.67, 1.9, ~2: monotone, below 2
        torch.testing.assert_close(torch.nn.functional.normalize(contract(points), dim=-1), d.expand(5, 3))
    # continuous across the cube's surface
    edge = torch.tensor([[1.0, 0.3, -0.2]])
    torch.testing.assert_close(contract(edge * (1 + 1e-6)), edge, atol=1e-5, rtol=0)


def test_cone_marching_is_contiguous_and_grows_its_steps_past_the_pivot():
    t_near, t_far = torch.tensor([0.05, 0.5, 3.0]), torch.tensor([100.0, 2.0, 50.0])
    step, cone = 0.1, 1 / 16  # pivot at 1.6
    rays, starts, ends = march_intervals(t_near, t_far, step, torch.zeros(3), cone)
    for r in range(3):
        s, e = starts[rays == r], ends[rays == r]
        assert float(s[0]) == pytest.approx(float(t_near[r])) and float(e[-1]) == pytest.approx(float(t_far[r]))
        torch.testing.assert_close(s[1:], e[:-1])  # no gaps, no overlaps
        lengths = (e - s)[:-1]  # the last is cut at t_far
        below = s[:-1] + step < step / cone
        torch.testing.assert_close(lengths[below], torch.full_like(lengths[below], step))
        assert (lengths[~below] >= step - 1e-6).all()
        grown = s[:-1][~below]
        torch.testing.assert_close(lengths[~below][1:], grown[1:] * cone, rtol=1e-4, atol=1e-6)
    # the geometric part takes about log(far / pivot) / log(1 + cone) samples instead of (far - pivot) / step
    assert int((rays == 0).sum()) < 16 + math.log(100 / 1.6) / math.log(1 + cone) + 2
    # without a cone: constant steps, as before
    rays, starts, ends = march_intervals(t_near, t_far, step, torch.zeros(3))
    torch.testing.assert_close((ends - starts)[rays == 1][:-1], torch.full((14,), step))


def test_contracted_marching_covers_whole_rays_and_reads_the_grid_at_contracted_points():
    grid = OccupancyGrid(torch.tensor(CONTRACTED_BOX), resolution=8)
    origins, directions = torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, -1.0]])
    rays = Contraction(near=0.05, far=500.0)
    samples = grid.march(origins, directions, 0.05, cone_angle=1 / 32, contraction=rays)
    for r in range(2):
        s, e = samples.t_starts[samples.ray_indices == r], samples.t_ends[samples.ray_indices == r]
        assert float(s[0]) == pytest.approx(0.05) and float(e[-1]) == pytest.approx(500.0)
    # only the outer shell of cells along +x (contracted x in (1.5, 2]) occupied: samples beyond distance 2
    grid.occupied.zero_()
    cells = grid.cell_index(torch.tensor([[1.75, 0.0, 0.0]]))
    grid.occupied[cells] = True
    kept = grid.march(origins, directions, 0.05, cone_angle=1 / 32, contraction=rays)
    assert kept.ray_indices.unique().tolist() == [0]
    mids = 0.5 * (kept.t_starts + kept.t_ends)
    assert float(mids.min()) > 1.9 and float(mids.max()) > 100  # contracted 1.5 is world 2; far ones too


def test_unbounded_hierarchical_samples_run_from_near_to_far_evenly_in_disparity():
    s = torch.linspace(0, 1.999, 50)
    torch.testing.assert_close(spread(unspread(s)), s, rtol=1e-4, atol=1e-5)
    sampler = HierarchicalSampler(torch.tensor(CONTRACTED_BOX), coarse=16, fine=0, contraction=Contraction(0.1, 100.0))
    samples = sampler.sample(None, torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]))
    edges = torch.cat([samples.t_starts, samples.t_ends[-1:]])
    assert float(edges[0]) == pytest.approx(0.1) and float(edges[-1]) == pytest.approx(100.0, rel=1e-4)
    gaps = spread(edges).diff()
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-3, atol=1e-5)
    assert float(edges[8]) < 1.5  # half the samples in the first 1.5 of 100 units


# a sphere of radius 0.6 at the origin seen by 16 cameras on a ring of radius 3 (heights alternating),
# with a sky coloured by direction all around; recorded under a rigid motion and a scale of 2.5
SIZE, FOCAL, VIEWS, RADIUS, SCALE = 16, 14.0, 16, 3.0, 2.5


def motion() -> torch.Tensor:
    """The similarity (4, 4) the capture is recorded under (the centring undoes it up to a turn about z)."""
    pose = look_at(torch.tensor([2.0, -1.0, 3.0]), torch.tensor([1.5, 1.0, 2.5]), torch.tensor([0.3, 0.2, 1.0]))
    pose[:3, :3] *= SCALE
    return pose.double()


def ring_poses() -> torch.Tensor:
    angles = [2 * math.pi * k / VIEWS for k in range(VIEWS)]
    eyes = [torch.tensor([RADIUS * math.cos(a), RADIUS * math.sin(a), 0.6 * (-1) ** k]) for k, a in enumerate(angles)]
    return torch.stack([look_at(eye) for eye in eyes]).double()


def recorded(poses: torch.Tensor) -> torch.Tensor:
    moved = motion() @ poses
    moved[:, :3, :3] /= SCALE
    return moved


def render_sphere_and_sky(pose: torch.Tensor) -> torch.Tensor:
    origins, directions = camera_rays(pose.float(), SIZE, SIZE, FOCAL)
    b = (origins * directions).sum(-1)
    disc = b**2 - (origins**2).sum(-1) + 0.36
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    normal = torch.nn.functional.normalize(origins + t[:, None] * directions, dim=-1)
    sky = 0.5 + 0.4 * torch.stack(
        [torch.sin(3 * directions[:, 0]), directions[:, 1], torch.cos(2 * directions[:, 2])], -1
    )
    return torch.where(hit[:, None], 0.5 + 0.45 * normal, sky).reshape(SIZE, SIZE, 3)


def write_capture(root):
    images = torch.stack([render_sphere_and_sky(p) for p in ring_poses()])
    write_nerfstudio(root, recorded(ring_poses()).float(), (images.numpy() * 255).round().astype(np.uint8), FOCAL)
    return root


def test_centring_finds_the_point_the_cameras_look_at_turns_up_to_z_and_scales_to_1():
    frame = centred_frame(recorded(ring_poses()))
    centre = motion()[:3, 3]
    torch.testing.assert_close(frame.centre, centre, atol=1e-6, rtol=0)
    moved = frame.apply(recorded(ring_poses()))
    distances = moved[:, :3, 3].norm(dim=-1)
    assert float(distances.max()) == pytest.approx(1.0)
    torch.testing.assert_close(
        distances, ring_poses()[:, :3, 3].norm(dim=-1) / float(ring_poses()[:, :3, 3].norm(dim=-1).max())
    )
    up = torch.nn.functional.normalize(moved[:, :3, 1].sum(dim=0), dim=0)
    torch.testing.assert_close(up, torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(moved[:, 2, 3], ring_poses()[:, 2, 3] / float(ring_poses()[:, :3, 3].norm(dim=-1).max()))
    # the 4x4 matrix and back; a shear is no frame
    again = SceneFrame.of_matrix(frame.matrix(), "here")
    torch.testing.assert_close(again.apply(recorded(ring_poses())), moved)
    sheared = frame.matrix()
    sheared[0, 1] += 0.3
    with pytest.raises(CamfieldsError, match="here: a scene frame must be a scaled rotation and a translation"):
        SceneFrame.of_matrix(sheared, "here")
    torch.testing.assert_close(
        rotation_to_z(torch.tensor([0.0, 0, -1])) @ torch.tensor([0.0, 0, -1], dtype=torch.float64),
        torch.tensor([0.0, 0, 1], dtype=torch.float64),
    )


def test_centring_refuses_a_forward_facing_capture():
    poses = torch.eye(4).repeat(5, 1, 1)
    poses[:, 0, 3] = torch.arange(5.0)
    with pytest.raises(CamfieldsError, match=r'spread too little .* rays.space = "ndc"'):
        centred_frame(poses, "the capture")


def test_ray_space_settings_are_checked_in_one_sentence():
    with pytest.raises(CamfieldsError, match=r'rays.space = "contract" samples the cube \[-2, 2\]\^3: set aabb'):
        RaysConfig(space="contract").validate([-1.0, -1, -1, 1, 1, 1])
    with pytest.raises(CamfieldsError, match="rays.near and rays.far must satisfy 0 <= near < far, got 5.0 and 2.0"):
        RaysConfig(space="contract", near=5.0, far=2.0).validate(CONTRACTED_BOX)
    assert RaysConfig(space="contract").contraction() == Contraction(0.05, 1000.0)
    with pytest.raises(CamfieldsError, match="contracted rays need 0 < near < far"):
        Contraction(0.0, 1.0).check("here")
    with pytest.raises(CamfieldsError, match="sampler.cone_angle must be from 0 to 1, got 2"):
        SamplerConfig(cone_angle=2.0).validate()


UNBOUNDED_FIT = {
    "downscale": 1,
    "background": [0.0, 0.0, 0.0],
    "turntable_frames": 0,
    "compression": {"bits": 8},
    "field": {"trunk": {"encoding": {"hash": {"log2_table_size": 12, "levels": 8}}}},
    "sampler": {"steps_per_diagonal": 64, "grid_resolution": 16, "warmup": 8, "update_every": 8},
    "train": {"steps": 100, "batch_size": 128, "lr": 1e-2},
}
#: cone marching with few, fast-growing steps to a near horizon: 40-odd samples per ray, a fit of 20 s
CONTRACT = {
    "aabb": CONTRACTED_BOX,
    "rays": {"space": "contract", "far": 100.0},
    "sampler": {**UNBOUNDED_FIT["sampler"], "steps_per_diagonal": 32, "cone_angle": 1 / 8},
}


def test_an_unbounded_fit_with_contracted_rays_beats_world_rays_and_its_file_keeps_the_frame(tmp_path):
    write_capture(tmp_path / "capture")
    runs = {}
    for name, extra in (("contract", CONTRACT), ("world", {})):
        cfg = nerf.resolve_config("ngp", overrides={**UNBOUNDED_FIT, **extra})
        runs[name] = nerf.fit_nerf(tmp_path / "capture", cfg, tmp_path / name, "cpu", progress=False)
    truths = [render_sphere_and_sky(ring_poses()[k]) for k in (0, 8)]
    mean_colour = sum(psnr(truth.mean(dim=(0, 1)).expand_as(truth), truth) for truth in truths) / 2
    # measured: about 21.0 dB with contracted rays, 4.4 dB with world rays (the scene lies outside the box),
    # 16.9 dB for the mean colour of each view
    assert runs["contract"]["psnr"] > runs["world"]["psnr"] + 8 and runs["contract"]["psnr"] > mean_colour + 2
    assert runs["contract"]["psnr_8bit"] == pytest.approx(runs["contract"]["psnr"], abs=0.5)
    # the file: contracted rays and the frame; poses in the capture's coordinates render the fitted views
    scene = read_scene(tmp_path / "contract" / "scene.camf")
    assert isinstance(scene.model, NeRFModel) and scene.model.contraction == Contraction(0.05, 100.0)
    held_out = recorded(ring_poses())[[0, 8]].float()
    frame = centred_frame(recorded(ring_poses())[[k for k in range(VIEWS) if k % 8]])
    torch.testing.assert_close(scene.frame.matrix(), frame.matrix(), atol=1e-6, rtol=0)
    view = render_view(scene, scene.recorded_poses(held_out)[0], camera=scene.camera)
    assert float(psnr(view, truths[0])) == pytest.approx(runs["contract"]["per_view"]["v_00"]["psnr"], abs=0.6)
    # decompress --views: cameras of a transforms file in the capture's coordinates render the same view
    angle = 2 * math.atan(0.5 * SIZE / FOCAL)
    frames = [{"file_path": f"v_{k}", "transform_matrix": held_out[k].tolist()} for k in range(2)]
    views = tmp_path / "transforms_test.json"
    views.write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    decompress(tmp_path / "contract" / "scene.camf", tmp_path / "views", DecodeOptions(views=views, device="cpu"))
    decoded = torch.from_numpy(iio.imread(tmp_path / "views" / "v_0.png")).float() / 255
    assert float((decoded - view).abs().max()) <= 1 / 255 + 1e-6
    # forged: a sheared frame, contracted rays ending before they start
    path = tmp_path / "contract" / "scene.camf"
    sheared = forged(path, tmp_path, "shear.camf", lambda h: h["frame"][0].__setitem__(1, h["frame"][0][1] + 0.5))
    with pytest.raises(CamfieldsError, match="shear.camf: the header's frame: a scene frame must be a scaled rotation"):
        read_scene(sheared)
    backwards = forged(path, tmp_path, "far.camf", lambda h: h["rays"].update(far=0.01))
    with pytest.raises(CamfieldsError, match="far.camf: contracted rays need 0 < near < far"):
        read_scene(backwards)


@pytest.mark.parametrize("model", ["vanilla", "vanilla_cam", "ngp", "ngp_cam"])
def test_the_unbounded_preset_contracts_rays_in_the_cube_of_side_4(model):
    cfg = nerf.resolve_config(model, config="nerf/unbounded_cpu")
    assert cfg.rays.space == "contract" and cfg.aabb == CONTRACTED_BOX and cfg.sampler.cone_angle > 0


def test_the_real_bird_capture_is_centred_with_its_cameras_around_the_z_axis():
    root = shared_data("real/bird")
    cfg = nerf.resolve_config("ngp", config="nerf/unbounded_cpu", overrides={"downscale": 16})
    data = nerf.NERF.load(cfg, root)
    centres = data.train.poses[:, :3, 3]
    assert float(centres.norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)
    # the cameras circle the z axis, near the height of the centre, looking at it
    assert float(centres[:, :2].norm(dim=-1).min()) > 0.5 and float(centres[:, 2].abs().max()) < 0.5
    axes = -data.train.poses[:, :3, 2]
    towards = torch.nn.functional.normalize(-centres, dim=-1)
    assert float((axes * towards).sum(-1).min()) > 0.9
    # each photo keeps its own focal, and the held-out views are moved like the training ones
    assert data.train.focals is not None and len(data.eval.poses) == 23
    assert float(data.eval.poses[:, :3, 3].norm(dim=-1).max()) < 1.05
