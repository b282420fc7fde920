"""Choice of the implementation behind a functional op, and loading of the CUDA extension.

``"torch"`` is the reference implementation and the CPU path. ``"cuda"`` is the fused
extension built from ``cuda/``: a prebuilt module (``CAMFIELDS_BUILD_CUDA=1 pip install
--no-build-isolation -e .``) when importable, else a just-in-time build on first use with
CUDA tensors (cached under ``$CAMFIELDS_CACHE`` or ``~/.cache/camfields``; torch's build
lock makes concurrent first uses safe; a change of sources, flags, architectures or torch
gives a new cache entry). ``"auto"`` uses the extension for CUDA tensors when it loads and
otherwise falls back to torch with one warning that names the reason. CPU tensors never
trigger a build. ``CAMFIELDS_BACKEND=torch`` in the environment makes ``"auto"`` mean torch.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch

from camfields import cuda_build
from camfields.errors import CamfieldsError

Backend = Literal["auto", "torch", "cuda"]
BACKENDS = ("auto", "torch", "cuda")

_STATE: dict[str, object] = {}


def _first_lines(text: str, count: int = 6) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "no message"


def _load_prebuilt() -> tuple[ModuleType | None, str | None]:
    """(module, None), or (None, reason) when a prebuilt extension exists but fails to load."""
    try:
        return importlib.import_module(cuda_build.EXTENSION_NAME), None
    except ModuleNotFoundError as e:
        if e.name == cuda_build.EXTENSION_NAME:
            return None, None  # not built ahead of time: try the JIT build
        return None, f"the prebuilt extension could not be imported: {e}"
    except ImportError as e:  # undefined symbols: built against another torch (ABI mismatch)
        return None, f"the prebuilt extension does not match this torch (ABI mismatch): {_first_lines(e, 2)}"


def _build_jit() -> tuple[ModuleType | None, str]:
    sources = cuda_build.source_paths()
    if not all(p.exists() for p in sources):
        return None, "the CUDA sources (cuda/) are not installed and no prebuilt extension exists"
    if torch.version.cuda is None:
        return None, "this torch build has no CUDA support"
    if cuda_build.apply_environment() is None:
        return None, "no CUDA toolkit (nvcc) was found; set CUDA_HOME"
    from torch.utils import cpp_extension

    key = cuda_build.build_key()
    cache = Path(os.environ.get("CAMFIELDS_CACHE", Path.home() / ".cache" / "camfields")) / key
    cache.mkdir(parents=True, exist_ok=True)
    flags = cuda_build.compile_flags()
    try:
        module = cpp_extension.load(
            name=f"{cuda_build.EXTENSION_NAME}_{key}",
            sources=[str(p) for p in sources],
            extra_cflags=flags["cxx"],
            extra_cuda_cflags=flags["nvcc"],
            extra_include_paths=[str(cuda_build.cuda_dir())],
            build_directory=str(cache),
            verbose=False,
        )
    except Exception as e:
        return None, f"the CUDA extension failed to compile: {_first_lines(e)}"
    return module, ""


def load_extension() -> tuple[ModuleType | None, str]:
    """The CUDA extension module, or (None, reason). Loaded once per process."""
    if "module" not in _STATE:
        module, reason = _load_prebuilt()
        if module is None and reason is None:
            module, reason = _build_jit()
        _STATE["module"], _STATE["reason"] = module, reason or ""
    return _STATE["module"], _STATE["reason"]  # type: ignore[return-value]


def cuda_extension_status() -> tuple[bool, str]:
    """Whether the fused CUDA extension can be used, and if not, why (builds it if needed)."""
    module, reason = load_extension()
    return module is not None, reason


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Return the concrete backend ("torch" or "cuda") for an op on ``tensors``."""
    if backend not in BACKENDS:
        raise CamfieldsError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    on_cuda = any(t.is_cuda for t in tensors)
    if backend == "torch" or (backend == "auto" and (not on_cuda or os.environ.get("CAMFIELDS_BACKEND") == "torch")):
        return "torch"
    if backend == "cuda" and not on_cuda:
        raise CamfieldsError("backend='cuda' needs CUDA tensors; these are on the CPU")
    available, reason = cuda_extension_status()
    if available:
        return "cuda"
    if backend == "cuda":
        raise CamfieldsError(f"backend='cuda' was requested but {reason}")
    if not _STATE.get("warned"):
        _STATE["warned"] = True
        warnings.warn(f"camfields is using its PyTorch path on the GPU because {reason}", stacklevel=3)
    return "torch"
