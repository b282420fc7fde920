"""Fit a dynamic scene (D-NeRF folder or packed .npz) with T-NeRF, T-NeRF + CAM or a space-time model; see README.md."""

from __future__ import annotations

from camfields.cli import scene_fit_main
from camfields.tasks.dynamic import PRESETS, fit_dynamic, resolve_config


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    data_help = (
        "D-NeRF scene folder (frames with 'time') or .npz with images, poses, times, focal (default: the config's data)"
    )
    scene_fit_main(argv, prog, __doc__, PRESETS, "tnerf_cam", data_help, "dynamic/hook", resolve_config, fit_dynamic)
