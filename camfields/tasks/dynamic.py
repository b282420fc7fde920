"""Dynamic scenes: radiance fields over time fitted to posed images with a time each.

Every model is a config of the shared modules and the fit is the static one
(``tasks.radiance``) with times on the rays:

- ``tnerf``: T-NeRF, a deformation MLP maps (x, t) to an offset into a canonical NeRF;
- ``tnerf_cam``: the same with the canonical trunk modulated by a 1D grid over time (5 nodes,
  one scale and shift per channel; the CAM paper's dynamic setting);
- ``kplanes_cam``: no deformation; the trunk reads (x, t) and is modulated by K-planes (six
  planes over the pairs of (x, y, z, t), gradient-safe product);
- ``hash4d``: an Instant-NGP-style hash-grid encoding over (x, y, z, t).

The occupancy grid covers the content at every time: it is refreshed from the density at a
random time per cell and keeps a decaying running maximum (the union over time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camfields.config import Presets, deep_merge, to_dict
from camfields.fields import EncodingConfig, FieldConfig, ModulationConfig
from camfields.io.dynamic import load_dynamic
from camfields.tasks.nerf import ngp_preset, vanilla_preset
from camfields.tasks.radiance import SceneConfig, SceneTask
from camfields.training.fit import fit


@dataclass
class DynamicConfig(SceneConfig):
    """A resolved dynamic-scene fit (see ``SceneConfig``; the field config adds time)."""


PRESETS = Presets(DynamicConfig, default="tnerf_cam")


@PRESETS.register("tnerf")
def tnerf() -> dict[str, Any]:
    """Vanilla NeRF as the canonical field, a 4x128 deformation MLP over (x, t), occupancy marching."""
    deformation = FieldConfig(
        encoding=EncodingConfig("sinusoidal", num_freqs=6), hidden=128, depth=4, output_activation="none"
    )
    return deep_merge(
        vanilla_preset(),
        {
            "field": {"deformation": to_dict(deformation)},
            "sampler": {"kind": "occupancy"},
            "train": {"steps": 30000},
        },
    )


#: CAM over time: the canonical trunk's layers scaled and shifted per channel by a 5-node 1D grid.
TIME_CAM = {
    "field": {
        "trunk_modulation": "time",
        "trunk": {"modulation": to_dict(ModulationConfig("dense", [5], per_channel=True))},
    }
}

#: CAM over space-time: (x, t) into the trunk, which K-planes over (x, y, z, t) modulate.
KPLANES_CAM = {
    "field": {
        "time_input": True,
        "trunk_modulation": "space_time",
        "trunk": {"modulation": to_dict(ModulationConfig("planes", [128, 128, 128, 32], combine="product"))},
    },
    "sampler": {"kind": "occupancy"},
    "train": {"steps": 30000},
}


@PRESETS.register("tnerf_cam")
def tnerf_cam() -> dict[str, Any]:
    return deep_merge(tnerf(), TIME_CAM)


@PRESETS.register("kplanes_cam")
def kplanes_cam() -> dict[str, Any]:
    return deep_merge(vanilla_preset(), KPLANES_CAM)


@PRESETS.register("hash4d")
def hash4d() -> dict[str, Any]:
    return deep_merge(ngp_preset(), {"field": {"time_input": True}})


DYNAMIC = SceneTask("dynamic", PRESETS, load_dynamic, "a D-NeRF folder or .npz")
resolve_config = DYNAMIC.resolve_config


def fit_dynamic(
    data: Path | None,
    cfg: DynamicConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit a dynamic scene (a D-NeRF folder or a packed ``.npz``; default ``cfg.data``) and evaluate it.

    Outputs and metrics as NeRF's (``tasks.radiance.SceneTask``); the turntable sweeps time from 0 to 1.
    """
    return fit(DYNAMIC, data, cfg, out_dir, device, resume, progress)
