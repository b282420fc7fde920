"""Choice of the implementation behind a functional op.

``"torch"`` is the reference implementation and the CPU path. ``"cuda"`` is the
fused CUDA extension (sources in ``cuda/``); until it is built and loadable,
asking for it explicitly is an error and ``"auto"`` uses ``"torch"``.
"""

from __future__ import annotations

from typing import Literal

import torch

from camfields.errors import CamfieldsError

Backend = Literal["auto", "torch", "cuda"]
BACKENDS = ("auto", "torch", "cuda")


def cuda_extension_status() -> tuple[bool, str]:
    """Whether the fused CUDA extension can be used, and if not, why."""
    return False, "the fused CUDA extension is not part of this build of camfields yet"


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Return the concrete backend ("torch" or "cuda") for an op on ``tensors``."""
    if backend not in BACKENDS:
        raise CamfieldsError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    on_cuda = any(t.is_cuda for t in tensors)
    if backend == "torch":
        return "torch"
    available, reason = cuda_extension_status()
    if backend == "cuda":
        if not on_cuda:
            raise CamfieldsError("backend='cuda' needs CUDA tensors; these are on the CPU")
        if not available:
            raise CamfieldsError(f"backend='cuda' was requested but {reason}")
        return "cuda"
    return "cuda" if (on_cuda and available) else "torch"
