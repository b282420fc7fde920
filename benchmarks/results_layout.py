"""Where the benchmarks write their results when no --out is given.

The layout is ``benchmarks/results/<task>/<dataset>/<what_it_measures>.json`` (op benchmarks and
the process-scaling run have no dataset: ``benchmarks/results/kernels/<what>.json``,
``benchmarks/results/distributed/<what>.json``). ``what`` ends with the device tag: ``cpu`` or the
GPU model (``h200``), so results of different machines sit side by side. A default path that
already holds a file is refused: a committed result is replaced only on purpose, with --out.
"""

from __future__ import annotations

from pathlib import Path

import torch

from camfields.errors import CamfieldsError

RESULTS = Path(__file__).resolve().parent / "results"


def device_tag(device: torch.device) -> str:
    """The device part of a result name: ``cpu``, or the GPU model in lower case without the
    vendor and with underscores (``NVIDIA H200`` -> ``h200``, ``NVIDIA H100 80GB HBM3`` ->
    ``h100_80gb_hbm3``)."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower().removeprefix("nvidia").strip()
    return "_".join(name.split())


def default_out(*parts: str) -> Path:
    """``benchmarks/results/<parts...>``, refused when a file is already there.

    Args:
        parts: the folders and the file name under ``benchmarks/results``, e.g.
            ``("image", "kodak", "cpu.json")``.

    Raises:
        CamfieldsError: the path already holds a result.
    """
    path = RESULTS.joinpath(*parts)
    if path.exists():
        raise CamfieldsError(
            f"{path} already holds a result; pass --out to write elsewhere, or delete it to replace it"
        )
    return path
