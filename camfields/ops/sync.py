"""What would make the host wait for the GPU, kept out of the training step.

Reading a value of a CUDA tensor (``.item()``, ``float(t)``, a check of its range) or copying
a pageable CPU tensor to the GPU makes the host wait until all queued GPU work is done, so
the next step's kernels start late. Three helpers avoid that:

* ``checks_values(t)``: whether a check that reads ``t``'s values runs. Always for CPU
  tensors (no wait there); for CUDA tensors only in debug mode, turned on by
  ``set_debug(True)`` or the environment variable ``CAMFIELDS_DEBUG=1`` (read on every call).
* ``to_device(t, device)``: a CPU tensor (e.g. a random batch drawn from a CPU generator)
  copied to the GPU through pinned memory without waiting; the copy is queued on the
  current stream, so the kernels after it see the values.
* ``device_constant(values, dtype, device)``: a small constant tensor made once per device.
"""

from __future__ import annotations

import functools
import os

import torch

_DEBUG: dict[str, bool] = {}


def set_debug(enabled: bool | None) -> None:
    """Turn the value checks on CUDA tensors on (True) or off (False); None defers to ``CAMFIELDS_DEBUG``."""
    _DEBUG.clear()
    if enabled is not None:
        _DEBUG["on"] = bool(enabled)


def debug_enabled() -> bool:
    """True when value checks also run on CUDA tensors (``set_debug``, else ``CAMFIELDS_DEBUG`` not "" or "0")."""
    if "on" in _DEBUG:
        return _DEBUG["on"]
    return os.environ.get("CAMFIELDS_DEBUG", "") not in ("", "0")


def checks_values(tensor: torch.Tensor) -> bool:
    """Whether a check that reads ``tensor``'s values runs: on the CPU always, elsewhere in debug mode only."""
    return tensor.device.type == "cpu" or debug_enabled()


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor`` on ``device`` (as ``dtype``); from the CPU to a GPU without a host wait."""
    device = torch.device(device)
    if tensor.device.type != "cpu" or device.type != "cuda":
        return tensor.to(device, dtype)
    return tensor.to(dtype or tensor.dtype).pin_memory().to(device, non_blocking=True)


@functools.lru_cache(maxsize=256)
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # a normal tensor, usable by autograd, even if first made in inference mode
        return torch.tensor(values, dtype=dtype, device=device)


def device_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.tensor(values)`` on ``device``, made (and copied from the host) once; do not modify it.

    ``values`` is a tuple of numbers or of tuples of numbers.
    """
    return _constant(values, dtype, torch.device(device))
