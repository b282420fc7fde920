"""Volume rendering of packed samples (each ray owns a contiguous run of samples).

For samples i of one ray with density sigma_i over [t_start_i, t_end_i]:
alpha_i = 1 - exp(-sigma_i * (t_end_i - t_start_i)), transmittance
T_i = exp(-sum_{j<i} sigma_j delta_j), weight w_i = T_i * alpha_i; colour = sum w_i c_i,
opacity = sum w_i, depth = sum w_i * (t_start_i + t_end_i) / 2, and the background shows
through with (1 - opacity).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class RenderResult(NamedTuple):
    """Per-ray outputs: colour (R, 3) over the background, opacity (R,), depth (R,)."""

    color: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor


def render_weights(
    sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights w_i and transmittances T_i (before sample i) of packed samples, each (S,).

    ``ray_indices`` (S,) must be sorted: the samples of a ray are contiguous and in order of t.
    """
    optical = sigmas * (t_ends - t_starts)
    # one running sum over all rays, minus what the earlier rays accumulated; in float64 so
    # that the difference of two large sums keeps its precision
    wide = optical.double()
    ray_totals = torch.zeros(n_rays, dtype=wide.dtype, device=wide.device).index_add_(0, ray_indices, wide)
    before_ray = torch.cumsum(ray_totals, dim=0) - ray_totals
    exclusive = (torch.cumsum(wide, dim=0) - wide - before_ray[ray_indices]).to(optical.dtype)
    transmittance = torch.exp(-exclusive)
    return transmittance * (1.0 - torch.exp(-optical)), transmittance


def volume_render(
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
    background: torch.Tensor,
) -> RenderResult:
    """Composite packed samples into per-ray colour, opacity and depth.

    Args:
        sigmas: (S,) densities >= 0.
        rgbs: (S, 3) colours in [0, 1].
        t_starts, t_ends: (S,) sample intervals along the ray (unit directions: distances).
        ray_indices: (S,) sorted ray index of each sample.
        n_rays: number of rays R (rays with no samples render the background).
        background: (3,) or (R, 3) colour behind the scene.
    """
    weights, _ = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays)
    zeros = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device)
    opacity = zeros.index_add(0, ray_indices, weights)
    depth = zeros.index_add(0, ray_indices, weights * 0.5 * (t_starts + t_ends))
    color = torch.zeros(n_rays, 3, dtype=rgbs.dtype, device=rgbs.device).index_add(
        0, ray_indices, weights[:, None] * rgbs
    )
    return RenderResult(color + (1.0 - opacity)[:, None] * background, opacity, depth)
