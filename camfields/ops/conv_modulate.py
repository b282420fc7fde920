"""Coordinate-aware modulation of convolutional feature maps (CAM in NeRV-style generators).

Each frame's map (C, H, W) is normalised per channel (instance norm, no affine, or not at
all), then scaled and shifted per channel by that frame's ``gamma`` and ``beta`` (read from a
grid over time by the caller), then passed through an activation. The torch function is the
reference; a fused kernel would take the ``"cuda"`` backend (there is none yet, see below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camfields.errors import CamfieldsError
from camfields.ops.backend import BACKENDS
from camfields.ops.modulate import get_activation

#: what the map is normalised by before the scale and shift
CONV_NORMS = ("instance", "none")


def conv_modulate(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    norm: str = "instance",
    activation: str = "gelu",
    eps: float = 1e-5,
    backend: str = "auto",
) -> torch.Tensor:
    """``act(norm(x) * gamma + beta)`` with one scale and shift per frame and channel.

    Args:
        x: (N, C, H, W) feature maps, one per frame.
        gamma: (N, C) scales (1 means unchanged).
        beta: (N, C) shifts.
        norm: "instance" (per frame and channel over H x W, no affine) or "none".
        activation: a name in ``ops.modulate.ACTIVATIONS``.
        backend: "auto" or "torch" (the reference); there is no fused kernel yet, so "cuda"
            is refused in one sentence and "auto" runs the reference on any device.
    Returns:
        (N, C, H, W) modulated, activated maps.

    Example:
        >>> x = torch.randn(2, 3, 4, 4)
        >>> out = conv_modulate(x, torch.ones(2, 3), torch.zeros(2, 3), norm="none", activation="none")
        >>> torch.equal(out, x)
        True
    """
    if x.dim() != 4:
        raise CamfieldsError(f"feature maps must have shape (N, C, H, W), got {tuple(x.shape)}")
    for name, t in (("gamma", gamma), ("beta", beta)):
        if tuple(t.shape) != tuple(x.shape[:2]):
            raise CamfieldsError(
                f"{name} must have shape ({x.shape[0]}, {x.shape[1]}) to modulate maps of shape "
                f"{tuple(x.shape)}, got {tuple(t.shape)}"
            )
    if norm not in CONV_NORMS:
        raise CamfieldsError(f"unknown norm {norm!r} for feature maps; choose one of {', '.join(CONV_NORMS)}")
    act = get_activation(activation)
    if backend not in BACKENDS:
        raise CamfieldsError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cuda":
        raise CamfieldsError("conv_modulate has no fused CUDA kernel yet; use backend='auto' or 'torch'")
    normed = F.instance_norm(x, eps=eps) if norm == "instance" else x
    return act(normed * gamma[..., None, None] + beta[..., None, None])
