"""Device selection and backend choice: clear errors, no build for CPU tensors."""

from __future__ import annotations

import pytest
import torch

from camfields import CamfieldsError
from camfields.ops import backend
from camfields.runtime import device_name, resolve_device


def test_device_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "CPU" in device_name(torch.device("cpu"))
    with pytest.raises(CamfieldsError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(CamfieldsError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_cpu_tensors_never_load_the_extension(monkeypatch):
    def fail():
        raise AssertionError("the CUDA extension was loaded for CPU tensors")

    monkeypatch.setattr(backend, "load_extension", fail)
    x = torch.zeros(2, 2)
    assert backend.resolve_backend("auto", x) == "torch"
    assert backend.resolve_backend("torch", x) == "torch"
    with pytest.raises(CamfieldsError, match="needs CUDA tensors"):
        backend.resolve_backend("cuda", x)
    with pytest.raises(CamfieldsError, match="unknown backend"):
        backend.resolve_backend("triton", x)


def test_unavailable_extension_warns_once_under_auto_and_errors_under_cuda(monkeypatch):
    class FakeCudaTensor:
        is_cuda = True

    monkeypatch.setattr(backend, "_STATE", {"module": None, "reason": "no CUDA toolkit (nvcc) was found"})
    with pytest.warns(UserWarning, match="PyTorch path on the GPU because no CUDA toolkit"):
        assert backend.resolve_backend("auto", FakeCudaTensor()) == "torch"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.resolve_backend("auto", FakeCudaTensor()) == "torch"
    with pytest.raises(CamfieldsError, match="backend='cuda' was requested but no CUDA toolkit"):
        backend.resolve_backend("cuda", FakeCudaTensor())
    monkeypatch.setenv("CAMFIELDS_BACKEND", "torch")
    monkeypatch.setattr(backend, "_STATE", {"module": object(), "reason": ""})
    assert backend.resolve_backend("auto", FakeCudaTensor()) == "torch"


def test_prebuilt_module_with_abi_mismatch_is_reported_not_hidden(monkeypatch):
    def broken_import(name):
        raise ImportError("camfields_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")

    monkeypatch.setattr(backend.importlib, "import_module", broken_import)
    module, reason = backend._load_prebuilt()
    assert module is None and "ABI mismatch" in reason and "undefined symbol" in reason
