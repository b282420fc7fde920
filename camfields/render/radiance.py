"""Rendering rays through a radiance field with occupancy-grid marching and early stopping."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from camfields.render.occupancy import OccupancyGrid, Samples
from camfields.render.volume import RenderResult, render_weights, volume_render


class Field(Protocol):
    def density(self, points: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class RayRender(NamedTuple):
    """A rendered batch of rays and the number of samples the field evaluated."""

    result: RenderResult
    samples: int


def _midpoints(origins: torch.Tensor, directions: torch.Tensor, samples: Samples) -> torch.Tensor:
    t_mid = 0.5 * (samples.t_starts + samples.t_ends)
    return origins[samples.ray_indices] + directions[samples.ray_indices] * t_mid[:, None]


def render_rays(
    field: Field,
    grid: OccupancyGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    step: float,
    background: torch.Tensor,
    near: float = 0.0,
    stop_transmittance: float = 1e-4,
) -> RayRender:
    """Render rays (R, 3) with unit directions through ``field``.

    Samples are placed every ``step`` inside the grid's box and kept in occupied cells; a
    density-only pass without gradients drops the samples behind which the transmittance
    has fallen under ``stop_transmittance`` (early ray termination); the field is then
    evaluated, with gradients, on the remaining samples only.
    """
    samples = grid.march(origins, directions, step, near)
    if stop_transmittance > 0 and len(samples.t_starts):
        with torch.no_grad():
            sigmas = field.density(_midpoints(origins, directions, samples))
            _, transmittance = render_weights(
                sigmas, samples.t_starts, samples.t_ends, samples.ray_indices, len(origins)
            )
        keep = transmittance > stop_transmittance
        samples = Samples(samples.ray_indices[keep], samples.t_starts[keep], samples.t_ends[keep])
    sigmas, rgbs = field(_midpoints(origins, directions, samples), directions[samples.ray_indices])
    result = volume_render(
        sigmas, rgbs, samples.t_starts, samples.t_ends, samples.ray_indices, len(origins), background
    )
    return RayRender(result, len(samples.t_starts))
