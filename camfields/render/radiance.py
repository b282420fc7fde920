"""Rendering rays through a radiance field: a sampler places samples, the field shades them."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from camfields.render.sampling import Sampler, sample_points
from camfields.render.volume import RenderResult, volume_render


class Field(Protocol):
    def density(self, points: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class RayRender(NamedTuple):
    """A rendered batch of rays and the number of samples the field evaluated."""

    result: RenderResult
    samples: int


def render_rays(
    field: Field,
    sampler: Sampler,
    origins: torch.Tensor,
    directions: torch.Tensor,
    background: torch.Tensor,
    generator: torch.Generator | None = None,
) -> RayRender:
    """Render rays (R, 3) with unit directions through ``field``.

    The sampler chooses the samples without gradients (skipping empty space, or
    coarse-to-fine); the field is then evaluated, with gradients, on those samples only and
    the result composited over ``background`` ((3,) or (R, 3)). Pass a ``generator`` while
    training to jitter the samples.
    """
    samples = sampler.sample(field, origins, directions, generator)
    sigmas, rgbs = field(sample_points(origins, directions, samples), directions[samples.ray_indices])
    result = volume_render(
        sigmas, rgbs, samples.t_starts, samples.t_ends, samples.ray_indices, len(origins), background
    )
    return RayRender(result, len(samples.t_starts))
