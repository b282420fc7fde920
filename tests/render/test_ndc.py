"""NDC rays for forward-facing scenes (issue 30, item 2): the NeRF transform against a plain reference and
the projection it stands for, the ray-space switch, and a tiny forward-facing capture (two textured planes
seen by a grid of cameras, written as an LLFF folder) fitted with and without NDC rays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_captures import llff_rows, write_images

from camfields import CamfieldsError
from camfields.fields import EncodingConfig, FieldConfig
from camfields.metrics import psnr
from camfields.render import camera_rays
from camfields.render.model import NDC_BOX, NeRFModel, RadianceConfig, RaysConfig, SamplerConfig, build_radiance_field
from camfields.render.radiance import render_rays
from camfields.render.rays import NDCCamera, forward_circle, look_at, ndc_rays
from camfields.render.sampling import HierarchicalSampler
from camfields.tasks import nerf

H, W, F = 6, 8, 7.0


def reference_ndc(o, d, height, width, focal, near):
    """The NeRF ``ndc_rays`` written out one ray at a time in Python floats."""
    t = -(near + o[2]) / d[2]
    o = [o[k] + t * d[k] for k in range(3)]
    return (
        [-focal / (width / 2) * o[0] / o[2], -focal / (height / 2) * o[1] / o[2], 1 + 2 * near / o[2]],
        [
            -focal / (width / 2) * (d[0] / d[2] - o[0] / o[2]),
            -focal / (height / 2) * (d[1] / d[2] - o[1] / o[2]),
            -2 * near / o[2],
        ],
    )


def forward_rays(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random world rays (count, 3) starting near the origin and pointing towards -z."""
    g = torch.Generator().manual_seed(seed)
    origins = (torch.rand(count, 3, generator=g, dtype=torch.float64) - 0.5) * 0.6
    directions = torch.nn.functional.normalize(
        torch.cat([torch.rand(count, 2, generator=g, dtype=torch.float64) - 0.5, -torch.ones(count, 1).double()], 1),
        dim=-1,
    )
    return origins, directions


@pytest.mark.parametrize("near", [1.0, 0.5])
def test_ndc_rays_match_the_nerf_reference(near):
    origins, directions = forward_rays(20)
    ndc_o, ndc_d = ndc_rays(origins, directions, H, W, F, near)
    for k in range(len(origins)):
        ref_o, ref_d = reference_ndc(origins[k].tolist(), directions[k].tolist(), H, W, F, near)
        torch.testing.assert_close(ndc_o[k], torch.tensor(ref_o, dtype=torch.float64))
        torch.testing.assert_close(ndc_d[k], torch.tensor(ref_d, dtype=torch.float64))
    torch.testing.assert_close(ndc_o[:, 2], torch.full((20,), -1.0, dtype=torch.float64))  # on the near plane


def test_a_points_ndc_coordinates_are_its_projection_along_the_ndc_ray():
    origins, directions = forward_rays(10, seed=1)
    near = 1.0
    ndc_o, ndc_d = ndc_rays(origins, directions, H, W, F, near)
    for s in (0.0, 0.7, 3.0, 40.0):  # beyond the near plane, out to far away
        # world points on each ray, s past where it crosses the near plane
        t_near = -(near + origins[:, 2]) / directions[:, 2]
        points = origins + (t_near + s)[:, None] * directions
        x, y, z = points.unbind(-1)
        projected = torch.stack([-F / (W / 2) * x / z, -F / (H / 2) * y / z, 1 + 2 * near / z], dim=-1)
        t_ndc = 1 + near / z  # NeRF's t' = 1 - o_z / p_z with o_z = -near
        torch.testing.assert_close(ndc_o + t_ndc[:, None] * ndc_d, projected)
        assert ((t_ndc >= 0) & (t_ndc < 1)).all() and (projected[:, 2] >= -1).all() and (projected[:, 2] < 1).all()


def test_the_pixels_of_the_ndc_camera_span_the_unit_square():
    origins, directions = camera_rays(torch.eye(4), H, W, F)
    ndc_o, _ = ndc_rays(origins, directions, H, W, F)
    columns = ndc_o[:, 0].reshape(H, W)[0]
    rows = ndc_o[:, 1].reshape(H, W)[:, 0]
    torch.testing.assert_close(columns, torch.linspace(-1 + 1 / W, 1 - 1 / W, W))  # left to right
    torch.testing.assert_close(rows, torch.linspace(1 - 1 / H, -1 + 1 / H, H))  # top to bottom


def test_rays_not_pointing_forward_leave_the_ndc_cube():
    origins = torch.zeros(3, 3)
    directions = torch.tensor([[1.0, 0, 0], [0, 0.6, 0.8], [0.1, 0, -1]])
    ndc_o, ndc_d = NDCCamera(H, W, F)(origins, directions)
    assert torch.isfinite(ndc_o).all() and torch.isfinite(ndc_d).all()
    assert (ndc_o[:2].abs().amax(dim=-1) > 1e3).all() and ndc_o[2].abs().max() <= 1
    torch.testing.assert_close(ndc_d.norm(dim=-1), torch.ones(3))  # the camera normalises


def test_ray_settings_are_checked_in_one_sentence():
    with pytest.raises(CamfieldsError, match="unknown rays.space .screen.; choose one of world, ndc, contract"):
        RaysConfig(space="screen").validate(NDC_BOX)
    with pytest.raises(CamfieldsError, match=r"rays.near and rays.far must satisfy 0 <= near < far, got -1.0"):
        RaysConfig(near=-1.0).validate(NDC_BOX)
    with pytest.raises(CamfieldsError, match=r"rays.near must be a positive number for NDC rays, got 0.0"):
        RaysConfig(space="ndc", near=0.0).validate(NDC_BOX)
    with pytest.raises(CamfieldsError, match=r"samples the cube \[-1, 1\]\^3: set aabb"):
        RaysConfig(space="ndc").validate([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
    RaysConfig(space="ndc").validate([-1, -1, -1, 1, 1, 1])
    with pytest.raises(CamfieldsError, match="NDC rays need a positive integer height"):
        NDCCamera(0, W, F).check("here")
    with pytest.raises(CamfieldsError, match="rays.space"):
        nerf.resolve_config("ngp", overrides={"rays": {"space": "ndc"}})


def test_forward_circle_looks_down_minus_z_from_a_circle():
    poses = forward_circle(0.5, -0.2, 8)
    torch.testing.assert_close(poses[:, :3, :3], torch.eye(3).expand(8, 3, 3))
    torch.testing.assert_close(poses[:, :2, 3].norm(dim=-1), torch.full((8,), 0.5))
    torch.testing.assert_close(poses[:, 2, 3], torch.full((8,), -0.2))


class DirectionColour(torch.nn.Module):
    """A field of constant density in the NDC cube whose colour is its view direction mapped to [0, 1]."""

    def __init__(self):
        super().__init__()
        self.aabb = torch.tensor(NDC_BOX)

    def density(self, points):
        return torch.full(points.shape[:1], 5.0)

    def forward(self, points, directions):
        return self.density(points), (directions + 1) / 2


def test_the_head_sees_the_world_direction_of_an_ndc_ray():
    aabb = torch.tensor(NDC_BOX)
    world_o, world_d = camera_rays(look_at(torch.tensor([0.3, 0.0, 0.0]), torch.tensor([0.0, 0.5, -3.0])), H, W, F)
    ndc = NDCCamera(H, W, F)
    ndc_o, ndc_d = ndc(world_o, world_d)
    sampler = HierarchicalSampler(aabb, 16, 0)
    seen = render_rays(DirectionColour(), sampler, ndc_o, ndc_d, torch.zeros(3), view_directions=world_d)
    opacity = seen.result.opacity[:, None]
    torch.testing.assert_close(seen.result.color, opacity * (world_d + 1) / 2)
    assert not torch.allclose(seen.result.color, opacity * (ndc_d + 1) / 2, atol=1e-3)
    # NeRFModel with an NDC camera does the same mapping from world rays
    enc = EncodingConfig("sinusoidal", num_freqs=2)
    cfg = RadianceConfig(FieldConfig(enc, hidden=8, depth=1), FieldConfig(enc, hidden=8, depth=1), features=4)
    model = NeRFModel(build_radiance_field(cfg, aabb), SamplerConfig(kind="hierarchical", coarse=16, fine=0), ndc)
    model.field = DirectionColour()
    torch.testing.assert_close(model.render(world_o, world_d, torch.zeros(3)).color, seen.result.color)


# a tiny forward-facing capture: 12 cameras on a 4x3 grid in a plane, all looking the same way at a
# textured square 2 units away in front of a textured wall 4 units away; recorded under a rigid motion
SIZE, FOCAL, NEAR_BOUND, FAR_BOUND = 16, 16.0, 1.5, 5.0


def motion() -> torch.Tensor:
    """The rigid motion (4, 4) the capture is recorded under (the loader's recentring undoes it)."""
    pose = look_at(torch.tensor([2.0, -1.0, 3.0]), torch.tensor([1.5, 1.0, 2.5]), torch.tensor([0.3, 0.2, 1.0]))
    return pose.double()


def canonical_poses() -> torch.Tensor:
    """The cameras (12, 4, 4) in the scene's frame: a 4x3 grid at z = 0 looking down -z."""
    poses = torch.eye(4, dtype=torch.float64).repeat(12, 1, 1)
    grid = [(x, y) for y in (-0.2, 0.0, 0.2) for x in (-0.3, -0.1, 0.1, 0.3)]
    poses[:, :2, 3] = torch.tensor(grid, dtype=torch.float64)
    return poses


def render_planes(pose: torch.Tensor) -> torch.Tensor:
    """The view (SIZE, SIZE, 3) of the two planes from a camera in the scene's frame."""
    origins, directions = camera_rays(pose, SIZE, SIZE, FOCAL)
    front = origins + ((-2.0 - origins[:, 2]) / directions[:, 2])[:, None] * directions
    wall = origins + ((-4.0 - origins[:, 2]) / directions[:, 2])[:, None] * directions
    front_colour = torch.stack(
        [0.9 + 0 * front[:, 0], 0.5 + 0.4 * torch.sin(3 * front[:, 0]), 0.5 + 0.4 * torch.cos(3 * front[:, 1])], -1
    )
    wall_colour = torch.stack(
        [0.2 + 0.15 * torch.sin(2 * wall[:, 1]), 0.3 + 0 * wall[:, 0], 0.5 + 0.3 * torch.cos(2 * wall[:, 0])], -1
    )
    in_front = (front[:, :2].abs() < 0.5).all(dim=-1, keepdim=True)
    return torch.where(in_front, front_colour, wall_colour).reshape(SIZE, SIZE, 3)


def write_forward_facing(root):
    """The capture as an LLFF folder (poses_bounds.npy and images/) under ``motion()``; returns root."""
    poses = canonical_poses()
    images = torch.stack([render_planes(p) for p in poses])
    write_images(root / "images", (images.numpy() * 255).round().astype(np.uint8))
    rows = llff_rows((motion() @ poses).float(), SIZE, SIZE, FOCAL)
    rows[:, 15:] = [NEAR_BOUND, FAR_BOUND]
    np.save(root / "poses_bounds.npy", rows)
    return root


FORWARD_FIT = {
    "downscale": 1,
    "background": [0.0, 0.0, 0.0],
    "turntable_frames": 2,
    "sampler": {"steps_per_diagonal": 64, "grid_resolution": 16, "warmup": 8, "update_every": 8},
    "train": {"steps": 40, "batch_size": 256, "lr": 1e-2},
}
NDC = {"aabb": NDC_BOX, "rays": {"space": "ndc"}}
#: a small hash grid: the fit takes a few seconds on 2 CPU cores
SMALL_NGP = {"field": {"trunk": {"encoding": {"hash": {"log2_table_size": 12, "levels": 8}}}}}


def fit_forward_facing(root, ndc: bool, steps: int, turntable_frames: int = 0) -> dict:
    """A small ngp fit of the forward-facing capture in ``root`` / "ff" (written if missing); its metrics."""
    if not (root / "ff").exists():
        write_forward_facing(root / "ff")
    overrides = {**FORWARD_FIT, **SMALL_NGP, **(NDC if ndc else {}), "turntable_frames": turntable_frames}
    cfg = nerf.resolve_config("ngp", overrides={**overrides, "train": {**FORWARD_FIT["train"], "steps": steps}})
    run = root / ("run_ndc" if ndc else "run_world")
    return nerf.fit_nerf(root / "ff", cfg, run, "cpu", progress=False) | {"config": cfg, "run": run}


def test_the_loader_recentres_and_scales_a_forward_facing_capture(tmp_path):
    from camfields.io.llff import BOUND_FACTOR, load_llff

    write_forward_facing(tmp_path)
    split = load_llff(tmp_path, "train", forward_facing=True)
    expected = canonical_poses()[[k for k in range(12) if k % 8]].float()
    expected[:, :3, 3] /= NEAR_BOUND * BOUND_FACTOR
    torch.testing.assert_close(split.poses, expected, atol=1e-5, rtol=0)
    recorded = load_llff(tmp_path, "train")  # the default leaves the poses as recorded
    torch.testing.assert_close(recorded.poses, (motion() @ canonical_poses()).float()[[k for k in range(12) if k % 8]])


def test_ndc_needs_an_llff_capture(tmp_path):
    (tmp_path / "scene").mkdir()
    cfg = nerf.resolve_config("ngp", overrides=NDC)
    with pytest.raises(CamfieldsError, match=r'rays.space = "ndc" needs a forward-facing LLFF capture'):
        nerf.NERF.load(cfg, tmp_path / "scene")


def test_a_forward_facing_fit_with_ndc_rays_beats_world_rays_and_the_background(tmp_path):
    with_ndc = fit_forward_facing(tmp_path, ndc=True, steps=60)
    without = fit_forward_facing(tmp_path, ndc=False, steps=60)
    held_out = [render_planes(canonical_poses()[k]) for k in (0, 8)]
    background_only = sum(psnr(torch.zeros_like(image), image) for image in held_out) / 2  # about 6.5 dB
    # measured: about 12.9 dB with NDC rays, 6.8 dB without (the scene lies outside the world box)
    assert with_ndc["psnr"] > background_only + 4 and with_ndc["psnr"] > without["psnr"] + 4


def test_the_llff_preset_fits_with_ndc_rays_in_the_unit_cube():
    for model in ("ngp", "vanilla_cam"):
        cfg = nerf.resolve_config(model, config="nerf/llff_cpu")
        assert cfg.rays.space == "ndc" and cfg.aabb == NDC_BOX and cfg.downscale == 16
