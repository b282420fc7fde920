"""Camera rays, volume rendering and occupancy-grid marching against analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from camfields.render import OccupancyGrid, camera_rays, focal_from_fov, ray_aabb, volume_render
from camfields.render.volume import render_weights


def test_focal_from_field_of_view():
    assert focal_from_fov(400, 2 * math.atan(0.5)) == pytest.approx(400.0)


def test_camera_rays_match_hand_computed_rays():
    # a camera at (1, 2, 3), turned 90 degrees about +y: its -z (viewing) axis points to world -x
    c2w = torch.tensor([[0.0, 0, 1, 1], [0, 1, 0, 2], [-1, 0, 0, 3], [0, 0, 0, 1]])
    origins, dirs = camera_rays(c2w, height=2, width=2, focal=1.0)
    assert torch.equal(origins, torch.tensor([[1.0, 2, 3]]).expand(4, 3))
    # pixel (row 0, col 0): camera direction (-0.5, 0.5, -1); world = R @ d = (-1, 0.5, 0.5)
    expected = torch.tensor([-1.0, 0.5, 0.5]) / math.sqrt(1.5)
    torch.testing.assert_close(dirs[0], expected)
    # pixel (row 1, col 1): camera (0.5, -0.5, -1) -> world (-1, -0.5, -0.5)
    torch.testing.assert_close(dirs[3], torch.tensor([-1.0, -0.5, -0.5]) / math.sqrt(1.5))
    # the centre pixel of an odd-sized image looks straight down the camera's -z axis
    _, centre = camera_rays(c2w, 3, 3, 2.0)
    torch.testing.assert_close(centre[4], -c2w[:3, 2])


def slab_samples(n_rays: int, step: float, far: float = 4.0):
    t = torch.arange(0.0, far, step, dtype=torch.float64)
    t_starts = t.repeat(n_rays)
    ray_indices = torch.arange(n_rays).repeat_interleave(len(t))
    return t_starts, t_starts + step, ray_indices


def test_constant_density_slab_has_the_analytic_opacity_depth_and_colour():
    sigma, a, b, step = 1.3, 1.0, 3.0, 1e-3
    t_starts, t_ends, rays = slab_samples(1, step)
    mids = 0.5 * (t_starts + t_ends)
    sigmas = torch.where((mids > a) & (mids < b), sigma, 0.0).double()
    rgbs = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64).expand(len(sigmas), 3)
    background = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    result = volume_render(sigmas, rgbs, t_starts, t_ends, rays, 1, background)
    length = b - a
    opacity = 1 - math.exp(-sigma * length)
    depth = a - b * math.exp(-sigma * length) + (1 - math.exp(-sigma * length)) / sigma
    assert result.opacity.item() == pytest.approx(opacity, abs=1e-3)
    assert result.depth.item() == pytest.approx(depth, abs=2e-3)
    expected_color = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64) * opacity + (1 - opacity)
    torch.testing.assert_close(result.color[0], expected_color, atol=1e-3, rtol=0)


def test_transmittance_restarts_for_every_ray():
    t_starts, t_ends, rays = slab_samples(3, 0.01, far=2.0)
    per_ray = len(t_starts) // 3
    sigmas = torch.zeros(len(t_starts), dtype=torch.float64)
    sigmas[:per_ray] = 50.0  # ray 0: opaque from the start
    sigmas[2 * per_ray :] = 0.5  # ray 2: thin fog; ray 1: empty
    weights, transmittance = render_weights(sigmas, t_starts, t_ends, rays, 3)
    assert transmittance[per_ray].item() == 1.0 and transmittance[2 * per_ray].item() == 1.0
    result = volume_render(
        sigmas,
        torch.zeros(len(sigmas), 3, dtype=torch.float64),
        t_starts,
        t_ends,
        rays,
        3,
        torch.ones(3, dtype=torch.float64),
    )
    assert result.opacity[0] == pytest.approx(1.0, abs=1e-9)
    assert result.opacity[1] == 0.0
    assert result.opacity[2] == pytest.approx(1 - math.exp(-0.5 * 2.0), abs=1e-9)
    torch.testing.assert_close(result.color[1], torch.ones(3, dtype=torch.float64))  # background only


def test_volume_render_float64_gradcheck():
    t_starts, t_ends, rays = slab_samples(2, 0.5, far=2.0)
    sigmas = torch.rand(len(t_starts), dtype=torch.float64, requires_grad=True)
    rgbs = torch.rand(len(t_starts), 3, dtype=torch.float64, requires_grad=True)
    bg = torch.ones(3, dtype=torch.float64)

    def color(s, c):
        return volume_render(s, c, t_starts, t_ends, rays, 2, bg).color

    assert torch.autograd.gradcheck(color, (sigmas, rgbs))


def test_ray_box_intersection():
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    origins = torch.tensor([[-3.0, 0, 0], [0.0, 0, 0], [-3.0, 5, 0]])
    dirs = torch.tensor([[1.0, 0, 0], [0.0, 0, 1], [1.0, 0, 0]])
    t_near, t_far = ray_aabb(origins, dirs, aabb)
    assert t_near[0] == pytest.approx(2.0) and t_far[0] == pytest.approx(4.0)
    assert t_near[1] == pytest.approx(-1.0) and t_far[1] == pytest.approx(1.0)
    assert t_near[2] > t_far[2]  # misses


def test_occupancy_skipping_never_drops_a_sample_in_an_occupied_cell():
    grid = OccupancyGrid(torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=8)
    g = torch.Generator().manual_seed(0)
    grid.occupied.copy_(torch.rand(8**3, generator=g) < 0.3)
    origins = torch.randn(64, 3, generator=g) * 0.3 - torch.tensor([0.0, 0.0, 3.0])
    dirs = torch.nn.functional.normalize(torch.tensor([0.0, 0.0, 1.0]) + 0.3 * torch.randn(64, 3, generator=g), dim=-1)
    every = grid.march(origins, dirs, step=0.01, skip_empty=False)
    kept = grid.march(origins, dirs, step=0.01)

    def cells(samples):
        mids = (
            origins[samples.ray_indices]
            + dirs[samples.ray_indices] * (0.5 * (samples.t_starts + samples.t_ends))[:, None]
        )
        return grid.cell_index(mids)

    in_occupied = grid.occupied[cells(every)]
    assert in_occupied.sum() == len(kept.t_starts) > 0
    assert torch.equal(kept.t_starts, every.t_starts[in_occupied])
    assert grid.occupied[cells(kept)].all()
    # samples of each ray are contiguous and ordered by distance
    assert torch.all(kept.ray_indices[1:] >= kept.ray_indices[:-1])
    same_ray = kept.ray_indices[1:] == kept.ray_indices[:-1]
    assert torch.all(kept.t_starts[1:][same_ray] > kept.t_starts[:-1][same_ray])


def test_occupancy_update_marks_the_cells_of_a_sphere():
    grid = OccupancyGrid(torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=16)
    grid.update(lambda p: (p.norm(dim=-1) < 0.5).float() * 10.0, step=0.01)
    centres = grid.cell_centers()
    inside = centres.norm(dim=-1) < 0.45
    outside = centres.norm(dim=-1) > 0.6
    assert grid.occupied[inside].all() and not grid.occupied[outside].any()
