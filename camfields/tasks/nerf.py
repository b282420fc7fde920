"""NeRF-style novel view synthesis: a radiance field fitted to posed images of a Blender scene.

Every model is a config of the shared modules (``MODEL_PRESETS``): a trunk CAMMLP over
the position (normalised to [-1, 1] in the scene box) gives density and features, a head
CAMMLP over the features and the encoded view direction gives colour. CAM modulates the
trunk at the position (tri-plane grid) or the head at the view direction (a small 2D
grid over azimuth and elevation). A sampler config picks occupancy-grid marching or
vanilla NeRF's hierarchical sampling.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from camfields.compression import quantized_copy, quantized_size_bytes
from camfields.config import check_choice, deep_merge, find_preset, from_dict, read_toml, to_dict
from camfields.errors import CamfieldsError
from camfields.fields import (
    EncodingConfig,
    FieldConfig,
    HashGridConfig,
    ModulationConfig,
    build_encoding,
    build_field,
    build_mlp,
)
from camfields.io.blender import CameraSplit, load_blender
from camfields.io.images import save_png
from camfields.io.video import write_video
from camfields.metrics import image_metrics, mse_to_psnr, psnr
from camfields.modules.radiance import RadianceField
from camfields.render.occupancy import OccupancyGrid
from camfields.render.radiance import render_rays
from camfields.render.rays import camera_rays, orbit_poses
from camfields.render.sampling import HierarchicalSampler, OccupancySampler, Sampler
from camfields.render.volume import RenderResult
from camfields.runtime import device_name, resolve_device
from camfields.tasks.image import count_parameters
from camfields.training import Evaluation, TrainConfig, train
from camfields.training.checkpoint import write_json
from camfields.training.run_dir import prepare_run_dir

SAMPLERS = ("occupancy", "hierarchical")
SPLITS = ("val", "test")


@dataclass
class RadianceConfig:
    """Trunk (its encoding: the position's) and head (its encoding: the view direction's)."""

    trunk: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    head: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    features: int = 256  # trunk features passed to the head
    density_bias: float = -2.0  # density = softplus(raw + bias)


@dataclass
class SamplerConfig:
    """How rays are sampled: occupancy-grid marching or hierarchical (coarse + fine)."""

    kind: str = "occupancy"
    steps_per_diagonal: int = 512  # occupancy: marching step = box diagonal / this
    grid_resolution: int = 128  # occupancy grid cells per axis
    threshold: float = 0.01  # occupancy: opacity of one step that marks a cell occupied
    update_every: int = 16  # occupancy: training steps between grid updates
    warmup: int = 256  # occupancy: steps during which updates refresh every cell
    update_fraction: float = 0.5  # occupancy: share of cells refreshed by an update after warm-up
    stop_transmittance: float = 1e-4  # occupancy: early ray termination
    coarse: int = 64  # hierarchical: stratified samples per ray
    fine: int = 128  # hierarchical: importance samples per ray


@dataclass
class NeRFConfig:
    """A resolved NeRF fit: data, model, sampling, training and evaluation settings."""

    model: str = "ngp"
    data: str = ""  # scene folder; the --data argument wins
    downscale: int = 2  # 800x800 Blender images -> 400x400
    background: list[float] = dataclasses.field(default_factory=lambda: [1.0, 1.0, 1.0])
    aabb: list[float] = dataclasses.field(default_factory=lambda: [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
    eval_split: str = "val"
    eval_views: int = 0  # evaluate this many views spread evenly over the split; 0 = all
    eval_chunk: int = 8192  # rays rendered at once during evaluation
    turntable_frames: int = 60  # frames of the novel-view turntable video; 0 = none
    quantize_bits: int = 8  # also evaluate with weights quantized to this many bits; 0 = off
    field: RadianceConfig = dataclasses.field(default_factory=RadianceConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(batch_size=4096))

    def validate(self) -> None:
        check_choice(self.eval_split, SPLITS, "evaluation split")
        check_choice(self.sampler.kind, SAMPLERS, "sampler")
        if self.downscale < 1:
            raise CamfieldsError(f"downscale must be a positive integer, got {self.downscale}")
        if len(self.background) != 3 or len(self.aabb) != 6:
            raise CamfieldsError("background needs 3 numbers (RGB in [0, 1]) and aabb 6 (min xyz, max xyz)")
        if any(lo >= hi for lo, hi in zip(self.aabb[:3], self.aabb[3:])):
            raise CamfieldsError(f"aabb {self.aabb} must list its minimum corner first, each below the maximum")
        if self.train.batch_size < 1:
            raise CamfieldsError("train.batch_size (rays per step) must be positive")
        self.train.validate()


def _vanilla() -> dict[str, Any]:
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


def _ngp() -> dict[str, Any]:
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

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "vanilla": _vanilla(),
    "vanilla_cam": deep_merge(_vanilla(), TRIPLANE_CAM),
    "vanilla_dircam": deep_merge(_vanilla(), DIRECTION_CAM),
    "ngp": _ngp(),
    "ngp_cam": deep_merge(_ngp(), DIRECTION_CAM),
}


def resolve_config(
    model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
) -> NeRFConfig:
    """Layer the model preset, a config file (path or ``scenes/`` preset) and overrides.

    A config file's top-level keys apply to every model; its ``[models.<name>]`` tables
    apply to that model only (e.g. smaller widths for a CPU-sized run).
    """
    file_data, source = {}, "command line"
    if config is not None:
        path = find_preset(config)
        file_data, source = read_toml(path), f"config {path}"
    per_model = file_data.pop("models", {})
    name = model or file_data.get("model", "ngp")
    check_choice(name, MODEL_PRESETS, "model")
    unknown = set(per_model) - set(MODEL_PRESETS)
    if unknown:
        raise CamfieldsError(
            f"{source}: [models.{sorted(unknown)[0]}] names no model; choose from {list(MODEL_PRESETS)}"
        )
    data = deep_merge(MODEL_PRESETS[name], file_data)
    data = deep_merge(deep_merge(data, per_model.get(name, {})), {**(overrides or {}), "model": name})
    cfg = from_dict(NeRFConfig, data, source)
    cfg.validate()
    return cfg


def build_radiance_field(cfg: RadianceConfig, aabb: torch.Tensor) -> RadianceField:
    """The radiance field of ``cfg`` over the box ``aabb`` (6,)."""
    trunk = build_field(cfg.trunk, in_dim=3, out_dim=1 + cfg.features)
    direction = build_encoding(cfg.head.encoding, 3)
    head = build_mlp(cfg.head, cfg.features + direction.out_dim, 3, encoding=None, mod_dim=2)
    return RadianceField(trunk, head, direction, aabb, cfg.density_bias)


class NeRFModel(nn.Module):
    """A radiance field, its occupancy grid (when marching) and its sampling settings.

    Checkpoints hold the field, the grid and ``steps_seen`` (which drives grid updates).
    """

    def __init__(self, field: RadianceField, sampler: SamplerConfig):
        super().__init__()
        check_choice(sampler.kind, SAMPLERS, "sampler")
        self.field, self.sampler_cfg = field, sampler
        self.grid = (
            OccupancyGrid(field.aabb, sampler.grid_resolution, threshold=sampler.threshold)
            if sampler.kind == "occupancy"
            else None
        )
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self._seen: int | None = None  # host copy of steps_seen, read from the device once

    @property
    def step_size(self) -> float:
        """Marching step: the box diagonal over ``steps_per_diagonal``."""
        box = self.field.aabb
        return float((box[3:] - box[:3]).norm()) / self.sampler_cfg.steps_per_diagonal

    def sampler(self) -> Sampler:
        cfg = self.sampler_cfg
        if self.grid is not None:
            return OccupancySampler(self.grid, self.step_size, cfg.stop_transmittance)
        return HierarchicalSampler(self.field.aabb, cfg.coarse, cfg.fine)

    def before_step(self, generator: torch.Generator) -> None:
        """Count a training step; refresh the occupancy grid when one is due."""
        if self._seen is None:
            self._seen = int(self.steps_seen)  # after a resume: the restored count
        cfg = self.sampler_cfg
        if self.grid is not None and self._seen % cfg.update_every == 0:
            fraction = 1.0 if self._seen < cfg.warmup else cfg.update_fraction
            self.grid.update(self.field.density, self.step_size, generator, fraction)
        self._seen += 1
        self.steps_seen += 1

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._seen = None
        return super().load_state_dict(state_dict, strict, assign)

    def render(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        background: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        """Colour, opacity and depth of rays (R, 3); ``generator`` jitters samples (training)."""
        return render_rays(self.field, self.sampler(), origins, directions, background, generator).result


class Rays(NamedTuple):
    """Rays (R, 3) with unit directions and their target colours (R, 3) in [0, 1]."""

    origins: torch.Tensor
    directions: torch.Tensor
    colors: torch.Tensor


def split_rays(split: CameraSplit, device: torch.device) -> Rays:
    """Every pixel's ray of every image of a split, images in order, pixels row-major."""
    _, height, width, _ = split.images.shape
    pairs = [camera_rays(pose, height, width, split.focal) for pose in split.poses]
    return Rays(
        torch.cat([o for o, _ in pairs]).to(device),
        torch.cat([d for _, d in pairs]).to(device),
        split.images.reshape(-1, 3).to(device),
    )


@torch.no_grad()
def render_image(
    model: NeRFModel, pose: torch.Tensor, height: int, width: int, focal: float, background: torch.Tensor, chunk: int
) -> torch.Tensor:
    """The model's view (H, W, 3) in [0, 1] from camera-to-world ``pose`` (4, 4)."""
    origins, directions = camera_rays(pose.to(background.device), height, width, focal)
    colors = [model.render(o, d, background).color for o, d in zip(origins.split(chunk), directions.split(chunk))]
    return torch.cat(colors).reshape(height, width, 3).clamp(0, 1)


class RayObjective:
    """Photometric MSE on ``batch_size`` random rays drawn across all training images.

    Evaluation during training renders ``preview`` (a held-out view: pose, image) for
    TensorBoard, or, without one, scores every training ray.
    """

    def __init__(
        self,
        rays: Rays,
        batch_size: int,
        background: torch.Tensor,
        preview: tuple[torch.Tensor, torch.Tensor, float] | None = None,
        chunk: int = 8192,
    ):
        self.rays, self.batch_size, self.background = rays, batch_size, background
        self.preview, self.chunk = preview, chunk

    def loss(self, model: NeRFModel, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        model.before_step(generator)
        index = torch.randint(len(self.rays.origins), (self.batch_size,), generator=generator)
        index = index.to(self.rays.origins.device)
        color = model.render(self.rays.origins[index], self.rays.directions[index], self.background, generator).color
        mse = torch.mean((color - self.rays.colors[index]) ** 2)
        return mse, mse_to_psnr(mse.detach())

    def evaluate(self, model: NeRFModel) -> Evaluation:
        if self.preview is None:
            pieces = zip(self.rays.origins.split(self.chunk), self.rays.directions.split(self.chunk))
            colors = torch.cat([model.render(o, d, self.background).color for o, d in pieces])
            return Evaluation({"psnr": psnr(colors, self.rays.colors)})
        pose, image, focal = self.preview
        view = render_image(model, pose, image.shape[0], image.shape[1], focal, self.background, self.chunk)
        return Evaluation({"psnr_preview": psnr(view, image)}, {"preview": view})


def _views(split: CameraSplit, count: int) -> list[int]:
    """Indices of ``count`` views spread evenly over the split (all when count is 0)."""
    total = len(split.poses)
    if count <= 0 or count >= total:
        return list(range(total))
    return sorted({math.floor(i * total / count) for i in range(count)})


def evaluate_views(
    model: NeRFModel, split: CameraSplit, views: list[int], background: torch.Tensor, chunk: int, out_dir: Path | None
) -> dict[str, dict[str, float | None]]:
    """PSNR, SSIM and LPIPS of each view; with ``out_dir``, each rendering saved there as PNG."""
    model.eval()
    height, width = split.images.shape[1:3]
    per_view = {}
    for index in views:
        name = split.names[index]
        view = render_image(model, split.poses[index], height, width, split.focal, background, chunk)
        per_view[name] = image_metrics(view, split.images[index].to(view.device))
        if out_dir is not None:
            save_png(out_dir / f"{name}.png", view)
    return per_view


def _mean(per_view: dict[str, dict[str, float | None]], key: str) -> float | None:
    values = [m[key] for m in per_view.values()]
    return None if any(v is None for v in values) else sum(values) / len(values)


def fit_nerf(
    data: Path | None,
    cfg: NeRFConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit a Blender scene and evaluate it; returns (and writes to ``metrics.json``) the metrics.

    Writes to ``out_dir``: ``config.json``, ``checkpoint.pt``, TensorBoard logs in ``tb/``,
    the evaluation views as PNG in ``eval_<split>/``, ``turntable.mp4`` and ``metrics.json``
    (mean and per-view PSNR / SSIM / LPIPS, optionally PSNR with quantized weights, model
    size in MB and with n-bit weights, training seconds, device).
    """
    cfg.validate()
    root = Path(data) if data else Path(cfg.data) if cfg.data else None
    if root is None:
        raise CamfieldsError("no scene given: pass --data DIR (a Blender scene folder) or a config with 'data'")
    torch_device = resolve_device(device)
    train_split = load_blender(root, "train", cfg.downscale, tuple(cfg.background))
    eval_split = load_blender(root, cfg.eval_split, cfg.downscale, tuple(cfg.background))
    out_dir = Path(out_dir)
    prepare_run_dir(out_dir, to_dict(cfg), resume)

    torch.manual_seed(cfg.train.seed)
    aabb = torch.tensor(cfg.aabb)
    model = NeRFModel(build_radiance_field(cfg.field, aabb), cfg.sampler).to(torch_device)
    background = torch.tensor(cfg.background, device=torch_device)
    views = _views(eval_split, cfg.eval_views)
    preview = (eval_split.poses[views[0]], eval_split.images[views[0]].to(torch_device), eval_split.focal)
    objective = RayObjective(
        split_rays(train_split, torch_device), cfg.train.batch_size, background, preview, cfg.eval_chunk
    )
    result = train(
        model, objective, cfg.train, out_dir, resume=resume, progress=progress, description=f"{root.name} {cfg.model}"
    )

    per_view = evaluate_views(model, eval_split, views, background, cfg.eval_chunk, out_dir / f"eval_{cfg.eval_split}")
    height, width = eval_split.images.shape[1:3]
    params = count_parameters(model)
    metrics: dict[str, Any] = {
        "scene": root.name,
        "model": cfg.model,
        "split": cfg.eval_split,
        "width": width,
        "height": height,
        "views": len(views),
        **{key: _mean(per_view, key) for key in ("psnr", "ssim", "lpips")},
        "params": params,
        "size_mb": params * 4 / 1e6,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "device": device_name(torch_device),
    }
    if cfg.quantize_bits:
        quantized = quantized_copy(model, cfg.quantize_bits)
        q_views = evaluate_views(quantized, eval_split, views, background, cfg.eval_chunk, None)
        metrics[f"psnr_{cfg.quantize_bits}bit"] = _mean(q_views, "psnr")
        metrics[f"size_mb_{cfg.quantize_bits}bit"] = quantized_size_bytes(model, cfg.quantize_bits) / 1e6
    metrics["per_view"] = per_view
    if cfg.turntable_frames:
        frames = [
            render_image(model, pose, height, width, eval_split.focal, background, cfg.eval_chunk)
            for pose in orbit_poses(train_split.poses, cfg.turntable_frames)
        ]
        write_video(out_dir / "turntable.mp4", frames)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
