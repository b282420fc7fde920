"""Fit a posed scene (a Blender, LLFF or nerfstudio folder) with a NeRF model (vanilla, CAM
variants, Instant-NGP style); see docs/nerf.md."""

from __future__ import annotations

from camfields.cli import scene_fit_main
from camfields.tasks.nerf import PRESETS, fit_nerf, resolve_config


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    data_help = (
        "scene folder: Blender (transforms_{train,val,test}.json), LLFF (poses_bounds.npy) or nerfstudio "
        "(transforms.json); default: the config's data"
    )
    scene_fit_main(argv, prog, __doc__, PRESETS, "ngp", data_help, "nerf/lego", resolve_config, fit_nerf)
