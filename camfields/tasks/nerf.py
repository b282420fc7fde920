"""NeRF-style novel view synthesis: a radiance field fitted to posed images of a scene folder
(Blender, LLFF or nerfstudio; ``io.scenes`` picks the loader).

Every model is a config of the shared modules (``PRESETS``): a trunk CAMMLP over
the position (normalised to [-1, 1] in the scene box) gives density and features, a head
CAMMLP over the features and the encoded view direction gives colour. CAM modulates the
trunk at the position (tri-plane grid) or the head at the view direction (a small 2D
grid over azimuth and elevation). A sampler config picks occupancy-grid marching or
vanilla NeRF's hierarchical sampling. The fit itself is shared with dynamic scenes
(``tasks.radiance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camfields.config import Presets, deep_merge, to_dict
from camfields.fields import EncodingConfig, FieldConfig, HashGridConfig, ModulationConfig
from camfields.io.scenes import load_scene
from camfields.render.model import RadianceConfig, SamplerConfig
from camfields.tasks.radiance import SceneConfig, SceneTask
from camfields.training import TrainConfig
from camfields.training.fit import fit


@dataclass
class NeRFConfig(SceneConfig):
    """A resolved NeRF fit (see ``SceneConfig``)."""


PRESETS = Presets(NeRFConfig, default="ngp")


@PRESETS.register("vanilla")
def vanilla_preset() -> dict[str, Any]:
    """Vanilla NeRF: sinusoidal encodings, 8x256 trunk with a skip, hierarchical sampling."""
    return to_dict(
        NeRFConfig(
            field=RadianceConfig(
                trunk=FieldConfig(
                    encoding=EncodingConfig("sinusoidal", num_freqs=10),
                    hidden=256,
                    depth=8,
                    skips=[4],
                    output_activation="none",
                ),
                head=FieldConfig(encoding=EncodingConfig("sinusoidal", num_freqs=4), hidden=128, depth=1),
                features=256,
            ),
            sampler=SamplerConfig(kind="hierarchical"),
            train=TrainConfig(
                steps=50000, lr=5e-4, schedule="exponential", final_lr_ratio=0.1, batch_size=1024, checkpoint_every=2000
            ),
        )
    )


@PRESETS.register("ngp")
def ngp_preset() -> dict[str, Any]:
    """Instant-NGP style: hash-grid encoding, one 64-wide trunk layer, occupancy marching."""
    return to_dict(
        NeRFConfig(
            field=RadianceConfig(
                trunk=FieldConfig(
                    encoding=EncodingConfig(
                        "hashgrid",
                        hash=HashGridConfig(
                            levels=16, features_per_level=2, log2_table_size=19, base_resolution=16, growth=1.447
                        ),
                    ),
                    hidden=64,
                    depth=1,
                    output_activation="none",
                ),
                head=FieldConfig(encoding=EncodingConfig("sinusoidal", num_freqs=4), hidden=64, depth=2),
                features=15,
            ),
            sampler=SamplerConfig(kind="occupancy"),
            train=TrainConfig(
                steps=20000,
                lr=1e-2,
                grid_lr_mult=1.0,
                schedule="step",
                milestones=[0.5, 0.75, 0.9],
                decay=0.33,
                batch_size=4096,
                adam_betas=[0.9, 0.99],
                adam_eps=1e-15,
                checkpoint_every=2000,
            ),
        )
    )


#: CAM over the 3D position: per-layer scale and shift from a tri-plane of 256^2 planes
#: (combined by the gradient-safe product), as in the CAM paper's NerfAcc experiment.
TRIPLANE_CAM = {
    "field": {"trunk": {"modulation": to_dict(ModulationConfig("planes", [256, 256, 256], combine="product"))}}
}

#: CAM over the view direction: a 10x3 grid over (azimuth, elevation) with one scale and
#: shift per channel of the head, after group norm (the CAM paper's Mip-NeRF setting; here
#: in the colour head so that density stays independent of the view).
DIRECTION_CAM = {
    "field": {"head": {"norm": "group", "groups": 1, "modulation": to_dict(ModulationConfig("dense", [10, 3], True))}}
}


#: CAM over the view direction in the trunk: the 10x3 direction grid of ``DIRECTION_CAM`` scales and
#: shifts every trunk layer after group norm, so that density too depends on the view (the CAM paper's
#: Mip-NeRF 360 setting, for unbounded scenes whose far content is seen from one side only).
DIRECTION_TRUNK_CAM = {
    "field": {
        "trunk_modulation": "direction",
        "trunk": {"norm": "group", "groups": 1, "modulation": to_dict(ModulationConfig("dense", [10, 3], True))},
    }
}


@PRESETS.register("vanilla_cam")
def vanilla_cam() -> dict[str, Any]:
    return deep_merge(vanilla_preset(), TRIPLANE_CAM)


@PRESETS.register("vanilla_dircam")
def vanilla_dircam() -> dict[str, Any]:
    return deep_merge(vanilla_preset(), DIRECTION_CAM)


@PRESETS.register("vanilla_dirtrunk")
def vanilla_dirtrunk() -> dict[str, Any]:
    return deep_merge(vanilla_preset(), DIRECTION_TRUNK_CAM)


@PRESETS.register("ngp_cam")
def ngp_cam() -> dict[str, Any]:
    return deep_merge(ngp_preset(), DIRECTION_CAM)


NERF = SceneTask("nerf", PRESETS, load_scene, "a Blender, LLFF or nerfstudio scene folder")
resolve_config = NERF.resolve_config


def fit_nerf(
    data: Path | None,
    cfg: NeRFConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the scene in folder ``data`` (default: ``cfg.data``) and evaluate it.

    Outputs and metrics: see ``tasks.radiance.SceneTask.evaluate`` and ``tasks.base.run_fit``.
    """
    return fit(NERF, data, cfg, out_dir, device, resume, progress)
