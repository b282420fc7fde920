"""What NeRF-style tasks share: radiance-field configs, the model with its sampler, rays,
the ray objective, evaluation (views, quantized weights, turntable video) and the fit.

A task (``tasks.nerf`` for static posed scenes, ``tasks.dynamic`` for scenes over time)
supplies its data loader and model presets; everything else is here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from camfields import distributed
from camfields.codec.scene import SceneCamera, encode_scene, read_scene, turntable_poses
from camfields.compression.config import CompressionConfig
from camfields.compression.qat import quantization_hooks
from camfields.config import Presets, check_choice
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.fields import count_parameters
from camfields.io.blender import CameraSplit
from camfields.io.centring import SceneFrame, centred_frame
from camfields.io.identity import data_identity
from camfields.io.images import save_png, to_uint8
from camfields.io.llff import llff_frame, load_llff
from camfields.io.video import write_video
from camfields.metrics import image_metrics, mean_or_none, mse_to_psnr, psnr
from camfields.ops.sync import to_device
from camfields.render.model import (
    NeRFModel,
    RadianceConfig,
    RaysConfig,
    SamplerConfig,
    build_radiance_field,
    check_box,
)
from camfields.render.radiance import render_image
from camfields.render.rays import NDCCamera, camera_rays, orbit_of
from camfields.training import Evaluation, FitResult, TrainConfig
from camfields.training.fit import Setup, Task
from camfields.training.hooks import Hook
from camfields.training.progress import phase

SPLITS = ("val", "test")
#: the file a scene fit writes, and the weights' bit depth of ``Task.export`` when ``compression.bits`` is 0
SCENE_FILE = "scene.camf"
DEFAULT_SCENE_BITS = 8
#: a dynamic field's occupancy updates cycle through this many slices of [0, 1] in time
TIME_STRATA = 8


@dataclass
class SceneConfig:
    """A resolved fit of posed images: data, model, sampling, training and evaluation settings."""

    model: str = "ngp"
    data: str = ""  # scene folder or file; the --data argument wins
    downscale: int = 2  # 800x800 Blender images -> 400x400
    background: list[float] = dataclasses.field(default_factory=lambda: [1.0, 1.0, 1.0])
    aabb: list[float] = dataclasses.field(default_factory=lambda: [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])
    eval_split: str = "val"
    eval_views: int = 0  # evaluate this many views spread evenly over the split; 0 = all
    eval_chunk: int = 8192  # rays rendered at once during evaluation
    turntable_frames: int = 60  # frames of the novel-view turntable video; 0 = none
    #: scene.camf's weight depth (the fit evaluates the field decoded from it; bits = 0: no file) and
    #: quantization-aware training
    compression: CompressionConfig = dataclasses.field(default_factory=CompressionConfig)
    field: RadianceConfig = dataclasses.field(default_factory=RadianceConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    #: world rays, or NDC rays for forward-facing LLFF captures (``space = "ndc"``, with aabb [-1, 1]^3)
    rays: RaysConfig = dataclasses.field(default_factory=RaysConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(batch_size=4096))
    #: settings that run folders of earlier versions recorded elsewhere (``run_dir.upgraded``)
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"quantize_bits": "compression.bits"}

    def validate(self) -> None:
        check_choice(self.eval_split, SPLITS, "evaluation split")
        if self.downscale < 1:
            raise CamfieldsError(f"downscale must be a positive integer, got {self.downscale}")
        check_box(self.aabb, self.background, "the scene config")
        self.rays.validate(self.aabb)
        self.compression.validate(allow_off=True)
        if self.train.batch_size < 1:
            raise CamfieldsError("train.batch_size (rays per step) must be positive")
        self.field.validate()
        self.sampler.validate()
        self.train.validate()


class OccupancyRefresh(Hook):
    """Refreshes a ``NeRFModel``'s occupancy grid every ``update_every`` steps (every cell during
    the first ``warmup`` steps, then ``update_fraction`` of them); a dynamic field's updates cycle
    through ``TIME_STRATA`` slices of time. Does nothing for a model without a grid."""

    def before_step(self, step: int, model: NeRFModel, generator: torch.Generator) -> None:
        cfg = model.sampler_cfg
        if model.grid is None or step % cfg.update_every:
            return
        fraction = 1.0 if step < cfg.warmup else cfg.update_fraction
        stratum = (step // cfg.update_every % TIME_STRATA, TIME_STRATA)
        density = lambda points: model.field.occupancy_density(points, generator, stratum)  # noqa: E731
        model.grid.update(density, model.step_size, generator, fraction)


class Rays(NamedTuple):
    """Rays (R, 3) with unit directions, their target colours (R, 3) in [0, 1] and, for a
    dynamic scene, their times (R,) in [0, 1]."""

    origins: torch.Tensor
    directions: torch.Tensor
    colors: torch.Tensor
    times: torch.Tensor | None = None


def split_rays(split: CameraSplit, device: torch.device) -> Rays:
    """Every pixel's ray of every image of a split, images in order, pixels row-major."""
    count, height, width, _ = split.images.shape
    pairs = [camera_rays(pose, height, width, split.view_focal(i)) for i, pose in enumerate(split.poses)]
    times = None if split.times is None else split.times.repeat_interleave(height * width).to(device)
    return Rays(
        torch.cat([o for o, _ in pairs]).to(device),
        torch.cat([d for _, d in pairs]).to(device),
        split.images.reshape(-1, 3).to(device),
        times,
    )


class View(NamedTuple):
    """One posed image: camera-to-world pose (4, 4), image (H, W, 3), focal in pixels, time or None."""

    pose: torch.Tensor
    image: torch.Tensor
    focal: float
    time: float | None = None

    @staticmethod
    def of(split: CameraSplit, index: int) -> View:
        time = None if split.times is None else float(split.times[index])
        return View(split.poses[index], split.images[index], split.view_focal(index), time)


class RayObjective:
    """Photometric MSE on ``batch_size`` random rays drawn across all training images.

    Evaluation during training renders ``preview`` (a held-out view) for TensorBoard, or,
    without one, scores every training ray.
    """

    def __init__(
        self,
        rays: Rays,
        batch_size: int,
        background: torch.Tensor,
        preview: View | None = None,
        chunk: int = 8192,
    ):
        self.rays, self.batch_size, self.background = rays, batch_size, background
        self.preview, self.chunk = preview, chunk

    def loss(self, model: NeRFModel, generator: torch.Generator, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.randint(len(self.rays.origins), (self.batch_size,), generator=generator)
        index = to_device(shard.take(batch), self.rays.origins.device)
        times = None if self.rays.times is None else self.rays.times[index]
        origins, directions = self.rays.origins[index], self.rays.directions[index]
        color = model.render(origins, directions, self.background, generator, times).color
        mse = shard.mean((color - self.rays.colors[index]) ** 2, len(batch))
        return mse, mse_to_psnr(mse.detach())

    def evaluate(self, model: NeRFModel) -> Evaluation:
        if self.preview is None:
            colors = []
            for start in range(0, len(self.rays.origins), self.chunk):
                part = slice(start, start + self.chunk)
                times = None if self.rays.times is None else self.rays.times[part]
                colors.append(
                    model.render(
                        self.rays.origins[part], self.rays.directions[part], self.background, times=times
                    ).color
                )
            return Evaluation({"psnr": psnr(torch.cat(colors), self.rays.colors)})
        p = self.preview
        view = render_image(
            model, p.pose, p.image.shape[0], p.image.shape[1], p.focal, self.background, self.chunk, p.time
        )
        return Evaluation({"psnr_preview": psnr(view, p.image)}, {"preview": view})


def _views(split: CameraSplit, count: int) -> list[int]:
    """Indices of ``count`` views spread evenly over the split (all when count is 0)."""
    total = len(split.poses)
    if count <= 0 or count >= total:
        return list(range(total))
    return sorted({math.floor(i * total / count) for i in range(count)})


def evaluate_views(
    model: NeRFModel,
    split: CameraSplit,
    views: list[int],
    background: torch.Tensor,
    chunk: int,
    out_dir: Path | None,
    progress: str | None = None,
) -> dict[str, dict[str, float | None]]:
    """PSNR, SSIM and LPIPS of each view; with ``out_dir``, each rendering saved there as PNG;
    with ``progress``, a progress bar of that label.

    Under torchrun the views are spread over the ranks; rank 0 gathers the metrics,
    writes the PNGs and returns the metrics (the other ranks return an empty dict).
    """
    model.eval()
    height, width = split.images.shape[1:3]

    def render_view(index: int) -> tuple[dict[str, float | None], torch.Tensor | None]:
        view = View.of(split, index)
        rendered = render_image(model, view.pose, height, width, view.focal, background, chunk, view.time)
        return image_metrics(rendered, view.image.to(rendered.device)), to_uint8(rendered) if out_dir else None

    per_view = {}
    for index, (metrics, image) in phase(distributed.map_gathered(views, render_view), len(views), progress):
        per_view[split.names[index]] = metrics
        if out_dir is not None:
            save_png(out_dir / f"{split.names[index]}.png", image.float() / 255)
    return per_view


class SceneData(NamedTuple):
    """A scene's training and evaluation views, its name (the folder's or file's stem) and the frame
    their poses were moved into from the capture's recorded coordinates (None: as recorded)."""

    train: CameraSplit
    eval: CameraSplit
    label: str
    frame: SceneFrame | None = None


#: loads one split: (path, split, downscale factor, background RGB) -> CameraSplit
SplitLoader = Callable[[Path, str, int, tuple[float, float, float]], CameraSplit]


class SceneTask(Task[SceneConfig, SceneData]):
    """Fit posed images (static or over time) with a radiance field; evaluate views, the field with
    quantized weights and a turntable video.

    Args:
        name: the task's name ("nerf", "dynamic").
        presets: its model presets.
        loader: reads one split of a scene.
        what: the input a user passes, for the error when none is given (e.g. "a Blender scene folder").
    """

    def __init__(self, name: str, presets: Presets, loader: SplitLoader, what: str):
        self.name, self.presets, self.loader, self.what = name, presets, loader, what

    def source(self, cfg: SceneConfig, source: Path | None) -> Path:
        """``source``, else ``cfg.data``; one sentence when neither names a scene."""
        source = source or (Path(cfg.data) if cfg.data else None)
        if source is None:
            raise CamfieldsError(f"no scene given: pass --data PATH ({self.what}) or a config with 'data'")
        return source

    def identity(self, cfg: SceneConfig, source: Path | None) -> dict[str, Any]:
        """The scene folder's (every file under it) or file's identity."""
        return data_identity(self.source(cfg, source))

    def load(self, cfg: SceneConfig, source: Path | None) -> SceneData:
        """The train and evaluation splits of ``source`` (default ``cfg.data``), their poses moved by the
        ray space's frame: with NDC rays (``rays.space = "ndc"``) an LLFF capture, scaled and recentred
        (``io.llff.forward_facing_frame``); with contracted rays (``"contract"``) any capture, centred on
        the point its training cameras look at and scaled to put them within distance 1
        (``io.centring.centred_frame``)."""
        source = self.source(cfg, source)
        background = tuple(cfg.background)
        loader = self.loader
        if cfg.rays.space == "ndc":
            if not (source / "poses_bounds.npy").is_file():
                raise CamfieldsError(
                    f'rays.space = "ndc" needs a forward-facing LLFF capture (a folder with poses_bounds.npy), '
                    f"and {source} is not one"
                )
            loader = load_llff
        train_split = loader(source, "train", cfg.downscale, background)
        eval_split = loader(source, cfg.eval_split, cfg.downscale, background)
        frame = None
        if cfg.rays.space == "ndc":
            frame = llff_frame(source)
        elif cfg.rays.space == "contract":
            frame = centred_frame(train_split.poses, f"{source} (training cameras)")
        if frame is not None:
            train_split = train_split._replace(poses=frame.apply(train_split.poses))
            eval_split = eval_split._replace(poses=frame.apply(eval_split.poses))
        return SceneData(train_split, eval_split, source.stem, frame)

    def build(self, cfg: SceneConfig, data: SceneData, device: torch.device) -> Setup:
        """The model (with NDC rays of the training camera for ``rays.space = "ndc"``, contracted rays for
        ``"contract"``), the ray objective over every training pixel, the hooks, and the scene file's
        default camera and frame."""
        ray_space = cfg.rays.contraction()
        if cfg.rays.space == "ndc":
            height, width = data.train.images.shape[1:3]
            ray_space = NDCCamera(height, width, data.train.focal, cfg.rays.near_distance())
        field = build_radiance_field(cfg.field, torch.tensor(cfg.aabb))
        model = NeRFModel(field, cfg.sampler, ray_space).to(device)
        if model.field.dynamic != (data.train.times is not None):
            needs, has = ("times", "none") if model.field.dynamic else ("no times", "times")
            raise CamfieldsError(f"model {cfg.model} needs images with {needs}, but the data has {has}")
        background = torch.tensor(cfg.background, device=device)
        views = _views(data.eval, cfg.eval_views)
        preview = View.of(data.eval, views[0])
        preview = preview._replace(image=preview.image.to(device))
        rays = split_rays(data.train, device)
        objective = RayObjective(rays, cfg.train.batch_size, background, preview, cfg.eval_chunk)
        width, height = data.eval.images.shape[2], data.eval.images.shape[1]
        path = "orbit" if model.ndc is None else "forward"
        camera = SceneCamera(width, height, data.eval.focal, *orbit_of(data.train.poses), path)
        extras = {"background": background, "views": views, "camera": camera, "frame": data.frame}
        hooks = [OccupancyRefresh(), *quantization_hooks(cfg.compression, cfg.train.steps, rays.colors.shape[0])]
        return Setup(model, objective, f"{data.label} {cfg.model}", hooks, extras)

    def export(self, cfg: SceneConfig, setup: Setup, path: Path) -> int:
        """Write the fitted model to the scene file ``path`` with ``compression.bits``-bit weights
        (8 when 0), the scene's default camera and its frame (``codec.scene.encode_scene``); returns its bytes."""
        field, sampler = cfg.field, cfg.sampler
        camera, bits = setup.extras["camera"], cfg.compression.bits or DEFAULT_SCENE_BITS
        frame = setup.extras["frame"]
        return encode_scene(path, setup.model, field, sampler, cfg.aabb, cfg.background, self.name, camera, bits, frame)

    def evaluate(
        self,
        cfg: SceneConfig,
        data: SceneData,
        setup: Setup,
        result: FitResult,
        out_dir: Path,
        shard: Shard,
        progress: bool,
    ) -> dict[str, Any] | None:
        """Renders the evaluation views (PNGs in ``eval_<split>/``), writes ``scene.camf`` with n-bit
        weights (``compression.bits``) and renders the views again from the model decoded from it, and
        ``turntable.mp4`` (sweeping time from 0 to 1 for a dynamic scene), spread over the ranks.
        Metrics on rank 0: mean and per-view PSNR / SSIM / LPIPS, PSNR of the decoded file, the
        model's size in MB in float32 and the file's (``file_bytes``), and the parameter count."""
        model, background, views = setup.model, setup.extras["background"], setup.extras["views"]
        split, name = data.eval, setup.label
        per_view = evaluate_views(
            model,
            split,
            views,
            background,
            cfg.eval_chunk,
            out_dir / f"eval_{cfg.eval_split}",
            f"{name}: {cfg.eval_split} views" if progress else None,
        )
        height, width = split.images.shape[1:3]
        params = count_parameters(model)
        metrics: dict[str, Any] = {
            "scene": data.label,
            "model": cfg.model,
            "split": cfg.eval_split,
            "width": width,
            "height": height,
            "views": len(views),
            **{key: mean_or_none([m[key] for m in per_view.values()]) for key in ("psnr", "ssim", "lpips")},
            "params": params,
            "size_mb": params * 4 / 1e6,
        }
        if cfg.compression.bits:
            bits = cfg.compression.bits
            path = out_dir / SCENE_FILE
            size = distributed.run_on_main(lambda: self.export(cfg, setup, path))
            decoded = read_scene(path).model.to(background.device)
            label = f"{name}: {cfg.eval_split} views, decoded from {bits}-bit {SCENE_FILE}" if progress else None
            q_views = evaluate_views(decoded, split, views, background, cfg.eval_chunk, None, label)
            metrics[f"psnr_{bits}bit"] = mean_or_none([m["psnr"] for m in q_views.values()])
            metrics[f"size_mb_{bits}bit"] = size / 1e6
            metrics["file_bytes"] = size
        metrics["per_view"] = per_view
        if cfg.turntable_frames:
            label = f"{name}: turntable" if progress else None
            frames = render_turntable(model, cfg, data, background, setup.extras["camera"], label)
            if shard.main:
                write_video(out_dir / "turntable.mp4", frames)
        return metrics if shard.main else None


def render_turntable(
    model: NeRFModel,
    cfg: SceneConfig,
    data: SceneData,
    background: torch.Tensor,
    camera: SceneCamera,
    progress: str | None,
) -> list[torch.Tensor]:
    """``cfg.turntable_frames`` views (H, W, 3) in [0, 1] along the path of the scene file's default
    ``camera`` (``codec.scene.turntable_poses``: an orbit around the training cameras, or a circle of
    forward-facing views), sweeping time from 0 to 1 for a dynamic field; rendered across the ranks,
    returned on rank 0."""
    count = cfg.turntable_frames
    height, width = data.eval.images.shape[1:3]
    times = [k / max(count - 1, 1) if model.field.dynamic else None for k in range(count)]
    cameras = list(zip(turntable_poses(camera, count), times))

    def render_frame(camera: tuple[torch.Tensor, float | None]) -> torch.Tensor:
        pose, time = camera
        return to_uint8(render_image(model, pose, height, width, data.eval.focal, background, cfg.eval_chunk, time))

    rendered = phase(distributed.map_gathered(cameras, render_frame), count, progress)
    return [frame.float() / 255 for _, frame in rendered]
