"""The device a fit runs on, and its name for results files."""

from __future__ import annotations

import platform

import torch

from camfields.errors import CamfieldsError


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; an unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CamfieldsError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CamfieldsError(f"device {name!r} was requested but torch sees no CUDA GPU here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CamfieldsError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU model, or the CPU model with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu} ({torch.get_num_threads()} threads)"
