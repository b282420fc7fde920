"""A trunk modulated at the view direction (the CAM paper's Mip-NeRF 360 setting, preset
``vanilla_dirtrunk``): density depends on the view, the renderer and the occupancy grid pass
directions, the field stays static, and a missing direction is one sentence."""

from __future__ import annotations

import pytest
import torch

from camfields import CamfieldsError
from camfields.render.model import NeRFModel, build_radiance_field
from camfields.render.radiance import render_rays
from camfields.tasks import nerf


def direction_trunk_model(kind: str = "hierarchical") -> NeRFModel:
    cfg = nerf.resolve_config(
        "vanilla_dirtrunk",
        overrides={
            "field": {"trunk": {"hidden": 16, "depth": 2, "skips": []}, "head": {"hidden": 16}, "features": 8},
            "sampler": {"kind": kind, "coarse": 8, "fine": 8, "grid_resolution": 8},
        },
    )
    torch.manual_seed(0)
    field = build_radiance_field(cfg.field, torch.tensor(cfg.aabb))
    with torch.no_grad():  # a trained-looking grid: scales and shifts that differ across directions
        for parameter in field.trunk.modulation.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return NeRFModel(field, cfg.sampler)


def test_density_depends_on_the_view_and_needs_the_direction():
    field = direction_trunk_model().field
    assert field.view_dependent_density and not field.dynamic
    points = torch.rand(64, 3) - 0.5
    up, side = torch.tensor([[0.0, 0, 1]]).expand(64, 3), torch.tensor([[1.0, 0, 0]]).expand(64, 3)
    assert not torch.allclose(field.density(points, directions=up), field.density(points, directions=side))
    with pytest.raises(CamfieldsError, match="density depends on the view: pass directions"):
        field.density(points)
    generator = torch.Generator().manual_seed(1)
    assert field.occupancy_density(points, generator).shape == (64,)  # a random direction per point


@pytest.mark.parametrize("kind", ["hierarchical", "occupancy"])
def test_rendering_passes_each_rays_direction_to_the_trunk(kind):
    model = direction_trunk_model(kind)  # the samplers' density pass would refuse a field without directions
    origins = torch.tensor([[0.0, 0, 3.0], [3.0, 0, 0]])
    directions = -torch.nn.functional.normalize(origins, dim=-1)
    result = model.render(origins, directions, torch.ones(3))
    result.color.sum().backward()
    grid_grads = [p.grad for p in model.field.trunk.modulation.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grid_grads)
    # the opacity alone (density through the trunk) follows the direction's grid cell
    opacity = render_rays(model.field, model.sampler(), origins, directions, torch.ones(3)).result.opacity
    with torch.no_grad():
        for parameter in model.field.trunk.modulation.parameters():
            parameter.mul_(0.0)
    assert not torch.allclose(opacity, model.render(origins, directions, torch.ones(3)).opacity, atol=1e-4)
