"""The coordinate-aware modulation op: normalize, scale, shift, activate.

    out = act(norm(h) * gamma + beta)

This is the reference semantics that the fused CUDA kernels must reproduce.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from camfields.errors import CamfieldsError
from camfields.ops.backend import resolve_backend
from camfields.ops.cuda_modulate import fused_modulate

#: Activations by name; "none" is the identity.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "softplus": F.softplus,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "gelu": F.gelu,
}

#: Normalizations over the channels of each point, without affine parameters.
NORMS = ("none", "layer", "group")


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``name``, or a CamfieldsError listing the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise CamfieldsError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def check_norm(norm: str, channels: int, groups: int) -> None:
    """Raise a CamfieldsError unless ``norm`` and ``groups`` fit ``channels``."""
    if norm not in NORMS:
        raise CamfieldsError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if norm == "group" and (groups < 1 or channels % groups):
        raise CamfieldsError(f"group norm needs groups dividing {channels} channels, got {groups}")


def normalize(h: torch.Tensor, norm: str, groups: int = 1, eps: float = 1e-5) -> torch.Tensor:
    """Normalize (N, C) pre-activations per point over channels (no affine).

    ``"layer"`` uses all C channels; ``"group"`` splits them into ``groups`` groups
    (``groups=1`` equals ``"layer"``); ``"none"`` returns ``h``.
    """
    if norm == "none":
        return h
    if norm == "layer":
        return F.layer_norm(h, h.shape[1:], eps=eps)
    return F.group_norm(h, groups, eps=eps)


def _check_affine(name: str, t: torch.Tensor, h: torch.Tensor) -> None:
    if t.dim() != 2 or t.shape[0] != h.shape[0] or t.shape[1] not in (1, h.shape[1]):
        raise CamfieldsError(
            f"{name} must have shape ({h.shape[0]}, 1) or ({h.shape[0]}, {h.shape[1]}) "
            f"to modulate pre-activations of shape {tuple(h.shape)}, got {tuple(t.shape)}"
        )


def modulate(
    h: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    norm: str = "none",
    groups: int = 1,
    activation: str = "relu",
    eps: float = 1e-5,
    backend: str = "auto",
) -> torch.Tensor:
    """Coordinate-aware modulation of one layer's pre-activations.

    Args:
        h: (N, C) pre-activations ``W a + b``.
        gamma: (N, C) per-channel or (N, 1) shared scale for each point.
        beta: same shape rules as ``gamma``; the shift.
        norm: "none", "layer" or "group" normalization over channels, no affine.
        groups: number of groups for ``norm="group"``.
        activation: a name in ``ACTIVATIONS``.
        backend: "auto", "torch" (reference) or "cuda" (fused kernels).
    Returns:
        (N, C) ``act(norm(h) * gamma + beta)``.

    Example:
        >>> h = torch.randn(4, 8)
        >>> out = modulate(h, torch.ones(4, 1), torch.zeros(4, 1), activation="none")
        >>> torch.equal(out, h)
        True
    """
    if h.dim() != 2:
        raise CamfieldsError(f"pre-activations must have shape (N, C), got {tuple(h.shape)}")
    _check_affine("gamma", gamma, h)
    _check_affine("beta", beta, h)
    check_norm(norm, h.shape[1], groups)
    act = get_activation(activation)
    if resolve_backend(backend, h, gamma, beta) == "cuda":
        return fused_modulate(h, gamma, beta, norm, groups, activation, eps)
    return act(torch.addcmul(beta, normalize(h, norm, groups, eps), gamma))
