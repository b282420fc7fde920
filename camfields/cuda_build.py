"""Build settings of the CUDA extension, shared by ``setup.py`` and the just-in-time build.

Standalone on purpose (standard library only at import): ``setup.py`` loads this file by
path, without importing the camfields package. Settings come from the environment:

* ``CUDA_HOME`` / ``CUDA_PATH``: the toolkit folder (holding ``bin/nvcc`` and
  ``lib64/libcudart.so``). When unset it is found from ``nvcc`` on ``PATH``, following
  symlinks and wrapper scripts, then from ``/usr/local/cuda*``.
* ``TORCH_CUDA_ARCH_LIST``: target architectures, e.g. ``"9.0"`` or ``"8.0;8.6+PTX"``.
  When unset: the visible GPUs' architectures, or with no GPU ``DEFAULT_ARCHS``.
* ``MAX_JOBS``: parallel compile jobs (default: the CPU count).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
from pathlib import Path

#: Module name of the ahead-of-time build (``CAMFIELDS_BUILD_CUDA=1 pip install ...``).
EXTENSION_NAME = "camfields_cuda"

#: Architectures built when neither TORCH_CUDA_ARCH_LIST nor a GPU says otherwise.
DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"

#: The CUDA sources, and the headers they include (part of the build key), in ``cuda/``.
SOURCE_FILES = ("bindings.cpp", "modulate.cu", "grid_modulate.cu", "hash_encode.cu")
HEADER_FILES = ("modulate.h", "device_math.cuh", "table_grad.cuh", "hash_encode.h")

#: The sources relative to the repository root, where ``setup.py`` builds them.
SOURCE_NAMES = tuple(f"cuda/{name}" for name in SOURCE_FILES)


def cuda_dir() -> Path:
    """``cuda/`` of a source checkout (or editable install), else the copy an installed package
    holds as ``camfields/_csrc``."""
    checkout = Path(__file__).resolve().parent.parent / "cuda"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "_csrc"


def source_paths(folder: Path | None = None) -> list[Path]:
    """Absolute paths of the CUDA sources in ``folder`` (default: ``cuda_dir()``)."""
    return [(folder or cuda_dir()) / name for name in SOURCE_FILES]


def _is_toolkit(folder: Path) -> bool:
    has_nvcc = (folder / "bin" / "nvcc").exists()
    has_runtime = any((folder / lib / "libcudart.so").exists() for lib in ("lib64", "lib", "targets/x86_64-linux/lib"))
    return has_nvcc and has_runtime


def _nvcc_targets(nvcc: str) -> list[Path]:
    """Toolkit folders an ``nvcc`` on PATH leads to: its real path, or the nvcc a wrapper script runs."""
    real = Path(os.path.realpath(nvcc))
    candidates = [real.parent.parent]
    try:
        if real.stat().st_size < 64 * 1024:
            text = real.read_text(errors="ignore")
            candidates += [Path(m).parent.parent for m in re.findall(r"(/[^\s\"']+/bin/nvcc)\b", text)]
    except OSError:
        pass
    return candidates


def find_cuda_home() -> str | None:
    """The CUDA toolkit folder, or None when there is none."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value and _is_toolkit(Path(value)):
            return value
    candidates: list[Path] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates += _nvcc_targets(nvcc)
    candidates += [Path(p) for p in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]]
    for folder in candidates:
        if _is_toolkit(folder):
            return str(folder)
    return None


def arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST, else the visible GPUs' architectures, else DEFAULT_ARCHS."""
    value = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if value:
        return value
    try:
        import torch

        if torch.cuda.is_available():
            caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
            return ";".join(f"{major}.{minor}" for major, minor in caps)
    except Exception:  # no driver: fall back to the default list
        pass
    return DEFAULT_ARCHS


def max_jobs() -> str:
    """MAX_JOBS, else the CPU count."""
    return os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)


def apply_environment() -> str | None:
    """Set CUDA_HOME, TORCH_CUDA_ARCH_LIST and MAX_JOBS for torch's build helpers.

    Returns the toolkit folder (None if there is none). Also corrects
    ``torch.utils.cpp_extension.CUDA_HOME`` when that module guessed before us.
    """
    home = find_cuda_home()
    if home:
        os.environ["CUDA_HOME"] = home
        import sys

        module = sys.modules.get("torch.utils.cpp_extension")
        if module is not None:
            module.CUDA_HOME = home
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list()
    os.environ["MAX_JOBS"] = max_jobs()
    return home


def compile_flags() -> dict[str, list[str]]:
    """Extra compiler flags for the C++ and CUDA sources."""
    return {"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]}


def build_key(folder: Path | None = None) -> str:
    """A digest of the sources, flags, architectures and torch version (names the JIT cache)."""
    import torch

    folder = folder or cuda_dir()
    digest = hashlib.sha256()
    for path in source_paths(folder) + [folder / name for name in HEADER_FILES]:
        digest.update(path.read_bytes())
    digest.update(repr((compile_flags(), arch_list(), torch.__version__, torch.version.cuda)).encode())
    return digest.hexdigest()[:16]
