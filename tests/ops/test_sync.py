"""Host waits kept out of the training step: the debug switch of the coordinate range check,
host-to-device copies and constants made once (camfields.ops.sync)."""

from __future__ import annotations

import pytest
import torch

from camfields import CamfieldsError
from camfields.ops import check_coords, set_debug
from camfields.ops.sync import checks_values, debug_enabled, device_constant, to_device

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _default_switch(monkeypatch):
    monkeypatch.delenv("CAMFIELDS_DEBUG", raising=False)
    set_debug(None)
    yield
    set_debug(None)


def test_the_range_check_runs_on_cpu_tensors_whatever_the_switch():
    outside = torch.tensor([[0.0, 1.5]])
    for switch in (False, True, None):
        set_debug(switch)
        with pytest.raises(CamfieldsError, match=r"must lie in \[-1, 1\]; got values from 0 to 1.5"):
            check_coords(outside, 2)
    check_coords(torch.tensor([[-1.0, 1.0]]), 2)


@pytest.mark.parametrize(
    ("env", "switch", "expected"),
    [
        (None, None, False),
        ("1", None, True),
        ("0", None, False),
        ("", None, False),
        ("1", False, False),
        (None, True, True),
    ],
)
def test_device_tensors_are_range_checked_only_in_debug_mode(monkeypatch, env, switch, expected):
    if env is not None:
        monkeypatch.setenv("CAMFIELDS_DEBUG", env)
    set_debug(switch)
    assert debug_enabled() is expected
    assert checks_values(torch.empty(3, 2, device="meta")) is expected  # any tensor off the CPU
    assert checks_values(torch.empty(3, 2)) is True


def test_without_debug_a_device_tensor_still_gets_its_shape_and_dtype_checked():
    check_coords(torch.empty(4, 3, device="meta"), 3)  # values unknown: not read
    with pytest.raises(CamfieldsError, match=r"shape \(N, 2\)"):
        check_coords(torch.empty(4, 3, device="meta"), 2)
    with pytest.raises(CamfieldsError, match="floating point"):
        check_coords(torch.empty(4, 2, dtype=torch.long, device="meta"), 2)


def test_device_constants_are_made_once_and_are_ordinary_tensors():
    with torch.inference_mode():
        first = device_constant((3, 5), torch.float32, torch.device("cpu"))
    assert first.tolist() == [3.0, 5.0] and not first.is_inference()
    assert device_constant((3, 5), torch.float32, "cpu") is first
    assert device_constant((3, 5), torch.float64, "cpu") is not first


def test_to_device_on_the_cpu_converts_the_dtype_and_keeps_the_values():
    values = torch.tensor([1, 2, 3])
    moved = to_device(values, "cpu", torch.float64)
    assert moved.dtype == torch.float64 and moved.tolist() == [1.0, 2.0, 3.0]


@needs_gpu
def test_to_device_copies_cpu_values_to_the_gpu():
    values = torch.randint(1000, (4096,), generator=torch.Generator().manual_seed(1))
    moved = to_device(values, "cuda", torch.float32)
    assert moved.is_cuda and torch.equal(moved.cpu(), values.float())


@needs_gpu
def test_on_the_gpu_the_range_error_fires_in_debug_mode_only():
    outside = torch.tensor([[0.0, 1.5]], device="cuda")
    check_coords(outside, 2)
    set_debug(True)
    with pytest.raises(CamfieldsError, match=r"must lie in \[-1, 1\]"):
        check_coords(outside, 2)


@needs_gpu
@pytest.mark.parametrize("backend_env", ["torch", None])
def test_a_cam_image_training_step_queues_without_a_host_wait(monkeypatch, backend_env):
    from camfields.distributed import Shard
    from camfields.fields import build_field
    from camfields.tasks.image import cam_field
    from camfields.training import CoordinateRegression, TrainConfig
    from camfields.training.optim import build_optimizer

    if backend_env is None:
        monkeypatch.delenv("CAMFIELDS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("CAMFIELDS_BACKEND", backend_env)
    model = build_field(cam_field(), in_dim=2, out_dim=3).cuda()
    coords = torch.rand(4096, 2, device="cuda") * 2 - 1
    objective = CoordinateRegression(coords, torch.rand(4096, 3, device="cuda"), batch_size=1024)
    optimizer = build_optimizer(model, TrainConfig())
    generator = torch.Generator().manual_seed(0)

    def step():
        loss, _ = objective.loss(model, generator, Shard())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: the extension, pinned buffers and optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
