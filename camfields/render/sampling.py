"""Where along each ray a radiance field is evaluated.

Two samplers produce packed ``Samples`` (ray index sorted, intervals ordered by distance):

- ``OccupancySampler``: a fixed step (or one growing with distance: cone marching) inside the
  scene box, samples in empty cells of an occupancy grid skipped, rays cut off once they are
  opaque (Instant-NGP / nerfacc style);
- ``HierarchicalSampler``: stratified samples over the box, then more samples drawn from
  the coarse weights by inverse transform sampling (vanilla NeRF's coarse-to-fine scheme,
  with one field serving both passes).

For an unbounded scene (a ``render.contraction.Contraction``) both sample whole rays, from its near
to its far distance, and read the grid and the field at contracted positions.

During training (a ``generator`` is given) sample positions are jittered per ray; at
evaluation they are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from camfields.ops.sync import to_device
from camfields.render.contraction import Contraction
from camfields.render.occupancy import OccupancyGrid, Samples, ray_aabb
from camfields.render.volume import render_weights


class DensityField(Protocol):
    """Density (S,) at sample points (S, 3) of the rays ``ray_indices`` (S,) (see ``render.radiance``)."""

    def density(self, points: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor: ...


def sample_points(origins: torch.Tensor, directions: torch.Tensor, samples: Samples) -> torch.Tensor:
    """World positions (S, 3) of the interval midpoints."""
    t_mid = 0.5 * (samples.t_starts + samples.t_ends)
    return origins[samples.ray_indices] + directions[samples.ray_indices] * t_mid[:, None]


def _weights(field: DensityField, origins: torch.Tensor, directions: torch.Tensor, samples: Samples) -> torch.Tensor:
    sigmas = field.density(sample_points(origins, directions, samples), samples.ray_indices)
    return render_weights(sigmas, samples.t_starts, samples.t_ends, samples.ray_indices, len(origins))


@dataclass
class OccupancySampler:
    """Marching every ``step`` through occupied cells, stopping where transmittance < ``stop_transmittance``."""

    grid: OccupancyGrid
    step: float
    stop_transmittance: float = 1e-4
    cone_angle: float = 0.0
    contraction: Contraction | None = None

    @torch.no_grad()
    def sample(
        self,
        field: DensityField,
        origins: torch.Tensor,
        directions: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Samples:
        samples = self.grid.march(
            origins,
            directions,
            self.step,
            generator=generator,
            cone_angle=self.cone_angle,
            contraction=self.contraction,
        )
        if self.stop_transmittance <= 0 or not len(samples.t_starts):
            return samples
        # early ray termination: a density-only pass finds where each ray turns opaque
        _, transmittance = _weights(field, origins, directions, samples)
        keep = (transmittance > self.stop_transmittance).nonzero().squeeze(1)  # one host wait for the count
        return Samples(samples.ray_indices[keep], samples.t_starts[keep], samples.t_ends[keep])


def _interval_samples(edges: torch.Tensor) -> Samples:
    """Packed samples from sorted edges (R, K + 1): K intervals per ray."""
    n_rays, k = edges.shape[0], edges.shape[1] - 1
    ray_indices = torch.arange(n_rays, device=edges.device).repeat_interleave(k)
    return Samples(ray_indices, edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1))


def stratified_edges(
    t_near: torch.Tensor, t_far: torch.Tensor, count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Edges (R, count + 1) of ``count`` equal intervals over [t_near, t_far] per ray.

    With a generator, the inner edges are shifted by one random fraction of an interval per
    ray (the outer edges stay at the ends), so every position gets sampled over training.
    """
    fractions = torch.arange(count + 1, dtype=t_near.dtype, device=t_near.device) / count
    if generator is not None:
        shift = to_device(torch.rand(len(t_near), 1, generator=generator), t_near.device, t_near.dtype) / count
        fractions = (fractions + shift).clamp(max=1.0)
        fractions[:, 0] = 0.0
        fractions[:, -1] = 1.0
    return t_near[:, None] + (t_far - t_near)[:, None] * fractions


def inverse_transform(
    edges: torch.Tensor, weights: torch.Tensor, count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``count`` distances (R, count) per ray drawn from the piecewise-constant pdf of ``weights``.

    Args:
        edges: (R, K + 1) sorted interval edges.
        weights: (R, K) non-negative weights of the intervals (a small floor keeps empty rays valid).
        generator: random uniforms when given, else evenly spaced quantiles.
    """
    pdf = weights + 1e-5
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1).clamp(max=1.0)
    if generator is None:
        u = ((torch.arange(count, dtype=edges.dtype, device=edges.device) + 0.5) / count).expand(len(edges), count)
    else:
        u = to_device(torch.rand(len(edges), count, generator=generator), edges.device, edges.dtype)
    u = u.contiguous()
    upper = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)
    lower = upper - 1
    c0, c1 = cdf.gather(1, lower), cdf.gather(1, upper)
    e0, e1 = edges.gather(1, lower), edges.gather(1, upper)
    fraction = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return e0 + fraction * (e1 - e0)


def spread(t: torch.Tensor) -> torch.Tensor:
    """Mip-NeRF 360's spacing of unbounded rays: s = t up to distance 1, then 2 - 1 / t (s < 2), so that
    samples even in s are even in distance nearby and even in disparity far away."""
    return torch.where(t < 1, t, 2 - 1 / t.clamp_min(1))


def unspread(s: torch.Tensor) -> torch.Tensor:
    """The distance t of spacing s in [0, 2) (the inverse of ``spread``)."""
    return torch.where(s < 1, s, 1 / (2 - s.clamp(1, 2 - 1e-7)))


@dataclass
class HierarchicalSampler:
    """``coarse`` stratified samples over the box, plus ``fine`` drawn where the coarse weights are.

    The coarse pass evaluates density only, without gradients; the returned samples are the
    union of both sets (``coarse + fine`` intervals per ray, cut at every sample position).
    Rays that miss the box get zero-length intervals (they render the background). With a
    ``contraction`` (unbounded scenes) the coarse samples run from its near to its far distance,
    evenly in ``spread`` distance (dense nearby, even in disparity far away).
    """

    aabb: torch.Tensor
    coarse: int = 64
    fine: int = 128
    near: float = 0.0
    contraction: Contraction | None = None

    @torch.no_grad()
    def sample(
        self,
        field: DensityField,
        origins: torch.Tensor,
        directions: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Samples:
        if self.contraction is None:
            t_near, t_far = ray_aabb(origins, directions, self.aabb.to(origins))
            t_near = t_near.clamp_min(self.near)
            t_far = torch.maximum(t_far, t_near)
            edges = stratified_edges(t_near, t_far, self.coarse, generator)
        else:
            near, far = (torch.full_like(origins[:, 0], v) for v in (self.contraction.near, self.contraction.far))
            edges = unspread(stratified_edges(spread(near), spread(far), self.coarse, generator))
        if self.fine == 0:
            return _interval_samples(edges)
        weights, _ = _weights(field, origins, directions, _interval_samples(edges))
        fine = inverse_transform(edges, weights.reshape(len(origins), self.coarse), self.fine, generator)
        merged, _ = torch.sort(torch.cat([edges, fine], dim=-1), dim=-1)
        return _interval_samples(merged)


class Sampler(Protocol):
    def sample(
        self,
        field: DensityField,
        origins: torch.Tensor,
        directions: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Samples: ...
