"""Rendering rays through a radiance field: a sampler places samples, the field shades them."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch

from camfields.render.rays import camera_rays
from camfields.render.sampling import Sampler, sample_points
from camfields.render.volume import RenderResult, volume_render


class Field(Protocol):
    """A static field: density (N,) at points (N, 3); density and colour (N, 3) seen along directions."""

    def density(self, points: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class TimedField(Protocol):
    """A dynamic field: as ``Field`` with a time (N,) in [0, 1] per point."""

    def density(self, points: torch.Tensor, times: torch.Tensor) -> torch.Tensor: ...

    def __call__(
        self, points: torch.Tensor, directions: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class RayConditioned:
    """A field seen by the samplers: evaluated at sample points of known rays.

    A static field ignores the rays; a dynamic field reads each sample at its ray's time. With
    ``contraction`` (an unbounded scene) the field is read at the contracted points. A field whose
    density depends on the view (``view_dependent_density``) gets each sample's ``ray_directions``.
    """

    def __init__(
        self,
        field: Field | TimedField,
        ray_times: torch.Tensor | None = None,
        contraction: Callable[[torch.Tensor], torch.Tensor] | None = None,
        ray_directions: torch.Tensor | None = None,
    ):
        self.field, self.ray_times, self.contraction = field, ray_times, contraction
        self.ray_directions = ray_directions if getattr(field, "view_dependent_density", False) else None

    def density(self, points: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
        if self.contraction is not None:
            points = self.contraction(points)
        if self.ray_directions is not None:
            times = None if self.ray_times is None else self.ray_times[ray_indices]
            return self.field.density(points, times, self.ray_directions[ray_indices])
        if self.ray_times is None:
            return self.field.density(points)
        return self.field.density(points, self.ray_times[ray_indices])

    def shade(
        self, points: torch.Tensor, directions: torch.Tensor, ray_indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.contraction is not None:
            points = self.contraction(points)
        if self.ray_times is None:
            return self.field(points, directions)
        return self.field(points, directions, self.ray_times[ray_indices])


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
    times: torch.Tensor | None = None,
    view_directions: torch.Tensor | None = None,
    contraction: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> RayRender:
    """Render rays (R, 3) with unit directions through ``field``.

    The sampler chooses the samples without gradients (skipping empty space, or
    coarse-to-fine); the field is then evaluated, with gradients, on those samples only and
    the result composited over ``background`` ((3,) or (R, 3)). Pass a ``generator`` while
    training to jitter the samples. A dynamic field takes ``times`` (R,) in [0, 1], one per ray.
    The field sees each ray's ``view_directions`` (R, 3), unit, when given (NDC rays: the world
    direction), else its sampling direction. With ``contraction`` (an unbounded scene) the field is
    read at the contracted sample points (the sampler must sample in that space too).
    """
    seen = directions if view_directions is None else view_directions
    conditioned = RayConditioned(field, times, contraction, seen)
    samples = sampler.sample(conditioned, origins, directions, generator)
    points = sample_points(origins, directions, samples)
    sigmas, rgbs = conditioned.shade(points, seen[samples.ray_indices], samples.ray_indices)
    result = volume_render(
        sigmas, rgbs, samples.t_starts, samples.t_ends, samples.ray_indices, len(origins), background
    )
    return RayRender(result, len(samples.t_starts))


class Renderer(Protocol):
    """A model that renders rays (R, 3) over a background, at times (R,) in [0, 1] if dynamic."""

    def render(
        self, origins: torch.Tensor, directions: torch.Tensor, background: torch.Tensor, *, times: torch.Tensor | None
    ) -> RenderResult: ...


@torch.no_grad()
def render_image(
    model: Renderer,
    pose: torch.Tensor,
    height: int,
    width: int,
    focal: float,
    background: torch.Tensor,
    chunk: int,
    time: float | None = None,
) -> torch.Tensor:
    """The model's view (H, W, 3) in [0, 1] from camera-to-world ``pose`` (4, 4), at ``time`` if
    dynamic, rendered ``chunk`` rays at a time."""
    origins, directions = camera_rays(pose.to(background.device), height, width, focal)
    colors = []
    for o, d in zip(origins.split(chunk), directions.split(chunk)):
        times = None if time is None else torch.full((len(o),), float(time), device=o.device)
        colors.append(model.render(o, d, background, times=times).color)
    return torch.cat(colors).reshape(height, width, 3).clamp(0, 1)
