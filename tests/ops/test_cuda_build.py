"""The CUDA sources compile wherever nvcc and a CUDA build of torch exist (GPU or not)."""

from __future__ import annotations

import pytest
import torch

from camfields import cuda_build


@pytest.fixture
def toolkit(monkeypatch):
    if torch.version.cuda is None:
        pytest.skip("this torch build has no CUDA support")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setenv("MAX_JOBS", "2")
    home = cuda_build.find_cuda_home()
    if home is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine")
    return home


def test_cuda_home_is_found_through_wrappers(toolkit):
    assert (cuda_build.Path(toolkit) / "bin" / "nvcc").exists()


@pytest.mark.slow
def test_extension_compiles_and_imports(toolkit, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_HOME", raising=False)  # found by camfields, not by torch's guess
    cuda_build.apply_environment()
    from torch.utils import cpp_extension

    flags = cuda_build.compile_flags()
    module = cpp_extension.load(
        name="camfields_cuda_compile_test",
        sources=[str(p) for p in cuda_build.source_paths()],
        extra_cflags=flags["cxx"],
        extra_cuda_cflags=flags["nvcc"],
        extra_include_paths=[str(cuda_build.cuda_dir())],
        build_directory=str(tmp_path),
        verbose=False,
    )
    assert callable(module.modulate_forward) and callable(module.modulate_backward)
    assert callable(module.hash_encode_forward) and callable(module.hash_encode_backward)
