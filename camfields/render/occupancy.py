"""An occupancy grid over an axis-aligned box, and ray marching that skips empty cells.

The grid keeps a running density per cell (updated from the field during training, as in
Instant-NGP and nerfacc) and marks a cell occupied when the opacity of one marching step
through it, ``density * step``, exceeds a threshold.
Marching places samples at a fixed step along each ray inside the box and keeps those
whose cell is occupied, packed ray by ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from camfields.ops.sync import to_device
from camfields.render.contraction import Contraction


class Samples(NamedTuple):
    """Packed samples: ray index (S,), sorted, and the interval [t_start, t_end] of each."""

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor


def ray_aabb(origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (R,) of rays through the box ``aabb`` = (xmin, ymin, zmin, xmax, ymax, zmax).

    Rays that miss the box get ``t_near > t_far``.
    """
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[:3] - origins) / safe
    t1 = (aabb[3:] - origins) / safe
    t_near = torch.minimum(t0, t1).amax(dim=-1)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


class OccupancyGrid(nn.Module):
    """A ``resolution``^3 grid of occupied / empty cells over ``aabb``.

    Args:
        aabb: (6,) box (xmin, ymin, zmin, xmax, ymax, zmax) holding the scene.
        resolution: cells per axis.
        decay: running-density decay per update.
        threshold: a cell is occupied when ``density * step`` exceeds
            ``min(threshold, its mean over the grid)``.
    """

    def __init__(self, aabb: torch.Tensor, resolution: int = 128, decay: float = 0.95, threshold: float = 0.01):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))
        self.resolution, self.decay, self.threshold = resolution, decay, threshold
        self.register_buffer("density", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))

    def cell_index(self, points: torch.Tensor) -> torch.Tensor:
        """Flat cell index (P,) of points (P, 3) (clamped into the grid), x fastest."""
        unit = (points - self.aabb[:3]) / (self.aabb[3:] - self.aabb[:3])
        cell = (unit * self.resolution).long().clamp(0, self.resolution - 1)
        return cell[:, 0] + self.resolution * (cell[:, 1] + self.resolution * cell[:, 2])

    def cell_centers(self, jitter: torch.Generator | None = None) -> torch.Tensor:
        """World positions (R^3, 3) of every cell's centre, or of a random point in it."""
        r = self.resolution
        idx = torch.arange(r**3, device=self.aabb.device)
        cell = torch.stack([idx % r, (idx // r) % r, idx // (r * r)], dim=-1).float()
        offset = torch.full_like(cell, 0.5)
        if jitter is not None:
            offset = to_device(torch.rand(cell.shape, generator=jitter), cell.device)
        return self.aabb[:3] + (cell + offset) / r * (self.aabb[3:] - self.aabb[:3])

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        step: float,
        generator: torch.Generator | None = None,
        fraction: float = 1.0,
        chunk: int = 1 << 18,
    ) -> None:
        """Fold ``density_fn`` at (jittered) cell points into the running densities, then re-threshold.

        Args:
            density_fn: world points (P, 3) -> densities (P,).
            step: the marching step whose opacity the threshold applies to.
            generator: jitters the points inside their cells and draws the cells to update.
            fraction: below 1, only ``fraction / 2`` of the cells drawn at random and as many
                drawn from the occupied ones are refreshed (nerfacc's cheaper update after
                warm-up); the other cells keep their running density.
        """
        total = self.resolution**3
        cells = torch.arange(total, device=self.aabb.device)
        if fraction < 1.0:
            count = max(1, int(total * fraction / 2))
            anywhere = to_device(torch.randint(total, (count,), generator=generator), cells.device)
            occupied = cells[self.occupied]
            if len(occupied):
                pick = to_device(torch.randint(len(occupied), (count,), generator=generator), cells.device)
                anywhere = torch.cat([anywhere, occupied[pick]])
            cells = torch.unique(anywhere)
        points = self.cell_centers(generator)[cells]
        fresh = torch.cat([density_fn(points[i : i + chunk]).reshape(-1) for i in range(0, len(points), chunk)])
        self.density[cells] = torch.maximum(self.density[cells] * self.decay, fresh)
        opacity = self.density * step
        self.occupied.copy_(opacity > opacity.mean().clamp(max=self.threshold))

    @torch.no_grad()
    def march(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        step: float,
        near: float = 0.0,
        skip_empty: bool = True,
        generator: torch.Generator | None = None,
        cone_angle: float = 0.0,
        contraction: Contraction | None = None,
    ) -> Samples:
        """Samples every ``step`` along each ray inside the box, beyond ``near``, in occupied cells.

        Args:
            origins, directions: (R, 3) rays with unit directions.
            step: sample spacing along the ray (the smallest, with ``cone_angle``).
            near: no sample starts before this distance.
            skip_empty: drop samples whose midpoint lies in an empty cell.
            generator: when given, each ray's samples start a random fraction of a step
                later (training jitter); the first interval still starts at the entry point.
            cone_angle: > 0: beyond distance ``step / cone_angle`` the spacing grows as
                ``cone_angle * distance`` (Instant-NGP's cone marching: far content gets fewer samples).
            contraction: an unbounded scene: rays run from ``contraction.near`` to ``contraction.far``
                instead of through the box, and the grid (over the contracted box) is read at the
                contracted sample positions.
        Returns:
            packed ``Samples`` sorted by ray, then by distance.
        """
        if contraction is None:
            t_near, t_far = ray_aabb(origins, directions, self.aabb)
            t_near = t_near.clamp_min(near)
        else:
            t_near = torch.full_like(origins[:, 0], max(near, contraction.near))
            t_far = torch.full_like(origins[:, 0], contraction.far)
        offset = torch.zeros_like(t_near)
        if generator is not None:
            offset = to_device(torch.rand(len(t_near), generator=generator), t_near.device, t_near.dtype) * step
        ray_indices, t_starts, t_ends = march_intervals(t_near, t_far, step, offset, cone_angle)
        if skip_empty:
            mids = origins[ray_indices] + directions[ray_indices] * (0.5 * (t_starts + t_ends))[:, None]
            if contraction is not None:
                mids = contraction(mids)
            keep = self.occupied[self.cell_index(mids)].nonzero().squeeze(1)  # one host wait for the count
            ray_indices, t_starts, t_ends = ray_indices[keep], t_starts[keep], t_ends[keep]
        return Samples(ray_indices, t_starts, t_ends)


def march_intervals(
    t_near: torch.Tensor, t_far: torch.Tensor, step: float, offset: torch.Tensor, cone_angle: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The marching intervals of rays from ``t_near`` to ``t_far`` (R,): ray index (S,), start and end (S,).

    Sample k of a ray starts at ``t_near - offset + k * step`` (``offset`` (R,) in [0, step): jitter); with
    ``cone_angle`` > 0 the steps grow once they pass ``pivot = step / cone_angle``: from the first sample at
    or beyond the pivot, b, sample j after it starts at ``b * (1 + cone_angle)^j``. Intervals are cut to
    [t_near, t_far]; rays with t_far <= t_near get none.
    """
    start = t_near - offset
    span = (t_far - start).clamp_min(0)
    if cone_angle <= 0:
        linear, geometric = (span / step).ceil().long(), torch.zeros_like(span, dtype=torch.long)
        first_geometric = t_far
    else:
        pivot = step / cone_angle
        linear = torch.minimum(((pivot - start) / step).ceil().clamp_min(0), (span / step).ceil()).long()
        first_geometric = start + linear * step
        ratio = math.log1p(cone_angle)
        reach = torch.log(t_far.clamp_min(1e-30) / first_geometric.clamp_min(1e-30)) / ratio
        geometric = torch.where(first_geometric < t_far, reach.ceil().clamp_min(0), 0).long()
    counts = linear + geometric
    ray_indices = torch.repeat_interleave(torch.arange(len(t_near), device=t_near.device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(len(ray_indices), device=t_near.device) - first[ray_indices]
    in_linear = k < linear[ray_indices]
    t_starts = start[ray_indices] + k * step
    t_ends = t_starts + step
    if cone_angle > 0:
        grown = first_geometric[ray_indices] * torch.exp((k - linear[ray_indices]) * ratio)
        t_starts = torch.where(in_linear, t_starts, grown)
        t_ends = torch.where(in_linear, t_ends, grown * (1 + cone_angle))
    t_ends = torch.minimum(t_ends, t_far[ray_indices])
    t_starts = torch.maximum(t_starts, t_near[ray_indices])
    return ray_indices, t_starts, t_ends
