"""Image fitting: regression (all pixels) and generalization (every 2nd pixel per axis).

Pixel (row i, column j) of an H x W image sits at coordinate
``(x, y) = ((2j + 1) / W - 1, (2i + 1) / H - 1)``: pixel centres in (-1, 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camfields import distributed
from camfields.codec.image import encode_image_field
from camfields.compression.config import CompressionConfig
from camfields.compression.qat import quantization_hooks
from camfields.config import Presets, check_choice, to_dict
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.fields import (
    EncodingConfig,
    FieldConfig,
    HashGridConfig,
    ModulationConfig,
    build_field,
    count_parameters,
)
from camfields.io.identity import data_identity
from camfields.io.images import (
    Image,
    downscale,
    list_images,
    load_embedded_image,
    load_image,
    pixel_coords,
    save_png,
)
from camfields.metrics import image_metrics, mean_or_none, psnr, ssim
from camfields.training import CoordinateRegression, Evaluation, FitResult, TrainConfig, predict
from camfields.training.checkpoint import read_json, write_json
from camfields.training.fit import METRICS_NAME, Setup, Task, fit, held_run_dir, run_fit
from camfields.training.progress import announce
from camfields.training.run_dir import prepare_run_dir

MODES = ("regression", "generalization")


def cam_field() -> FieldConfig:
    """FFN + CAM as in the CAM paper: a 32x32 grid scales and shifts every layer-normed hidden layer."""
    return FieldConfig(
        encoding=EncodingConfig("fourier", num_features=256, sigma=10.0),
        norm="layer",
        modulation=ModulationConfig(grid="dense", resolution=[32, 32], per_channel=False),
    )


@dataclass
class ImageConfig:
    """A resolved image fit: the model preset it started from, the data mode and the training."""

    model: str = "cam"
    mode: str = "regression"
    downscale: int = 1
    field: FieldConfig = dataclasses.field(default_factory=cam_field)
    #: the weight depth of the file ``export`` writes, and quantization-aware training (off by default)
    compression: CompressionConfig = dataclasses.field(default_factory=CompressionConfig)
    #: the reference's schedule: lr x0.1 at steps 1000 and 1500 whatever the fit's length (a short
    #: fit runs at the full rate; extending a fit continues the same curve)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(schedule_steps=2000))

    def validate(self) -> None:
        check_choice(self.mode, MODES, "mode")
        if self.downscale < 1:
            raise CamfieldsError(f"downscale must be a positive integer, got {self.downscale}")
        self.field.validate()
        self.compression.validate()
        self.train.validate()


#: The image models: the FFN baseline of the papers, FFN + CAM as in the CAM paper,
#: and an Instant-NGP-style hash-grid field.
PRESETS = Presets(ImageConfig, default="cam")


@PRESETS.register("ffn")
def ffn() -> dict[str, Any]:
    """The baseline: 256 Fourier features (sigma 10) into a 3x256 ReLU MLP."""
    return {"field": to_dict(FieldConfig(encoding=EncodingConfig("fourier", num_features=256, sigma=10.0)))}


@PRESETS.register("cam")
def cam() -> dict[str, Any]:
    return {"field": to_dict(cam_field())}


@PRESETS.register("ngp")
def ngp() -> dict[str, Any]:
    """Instant-NGP style: a 16-level hash grid (2^14 entries per level) into a 2x64 MLP."""
    hash_grid = HashGridConfig(levels=16, features_per_level=2, log2_table_size=14, base_resolution=8, growth=1.33)
    return {"field": to_dict(FieldConfig(encoding=EncodingConfig("hashgrid", hash=hash_grid), hidden=64, depth=2))}


def pyramid_field() -> FieldConfig:
    """A latent pyramid (6 levels from one node per pixel, ``PyramidEncoding``) into a 2x16 ReLU MLP."""
    return FieldConfig(encoding=EncodingConfig("pyramid"), hidden=16, depth=2)


#: the pyramid models train through their quantizer, with the rate term on (its weight sets the
#: rate; ``eval-rd --rate-weights`` sweeps it), for the last 80 % of the fit, and with steps that
#: learn from the loss too, at the grids' rate of 1e-2 (lr 1e-3 x grid_lr_mult 10). On three Kodak
#: images at 384x256 (1000 steps, context-coded files), BD-rate vs JPEG: QAT over the last half
#: -8.7 %, over the last 80 % -13.5 %, with learned steps -14.5 % (all of it: the fit never
#: recovers, 18 dB on kodim05 at rate weight 0.02)
PYRAMID_COMPRESSION = CompressionConfig(bits=6, qat_fraction=0.8, rate_weight=0.01, step_gradient=True)


@PRESETS.register("pyramid")
def pyramid() -> dict[str, Any]:
    """A codec field: the latent pyramid's nodes carry the image and the rate term keeps most of them
    at zero, Cool-chic style (without its autoregressive entropy model); see docs/codec.md."""
    return {"field": to_dict(pyramid_field()), "compression": to_dict(PYRAMID_COMPRESSION)}


@PRESETS.register("pyramid_cam")
def pyramid_cam() -> dict[str, Any]:
    """``pyramid`` with CAM: a 16x16 grid scales and shifts each layer-normed hidden layer."""
    modulation = ModulationConfig(grid="dense", resolution=[16, 16], per_channel=False)
    field = dataclasses.replace(pyramid_field(), norm="layer", modulation=modulation)
    return {"field": to_dict(field), "compression": to_dict(PYRAMID_COMPRESSION)}


def training_mask(height: int, width: int, mode: str) -> torch.Tensor:
    """(H * W,) bool: all pixels for regression, every 2nd row and column for generalization."""
    mask = torch.ones(height, width, dtype=torch.bool)
    if mode == "generalization":
        mask[:] = False
        mask[::2, ::2] = True
    return mask.reshape(-1)


class ImageObjective(CoordinateRegression):
    """Pixel regression on the training pixels; evaluation renders the whole image."""

    def __init__(self, image: torch.Tensor, train_mask: torch.Tensor, batch_size: int):
        height, width, channels = image.shape
        self.image = image
        self.all_coords = pixel_coords(height, width).to(image.device)
        targets = image.reshape(-1, channels)
        super().__init__(self.all_coords[train_mask], targets[train_mask], batch_size)

    def render(self, model: torch.nn.Module) -> torch.Tensor:
        """The model's image (H, W, C), clamped to [0, 1]."""
        return predict(model, self.all_coords).reshape(self.image.shape).clamp(0, 1)

    def evaluate(self, model: torch.nn.Module) -> Evaluation:
        recon = self.render(model)
        return Evaluation({"psnr": psnr(recon, self.image), "ssim": ssim(recon, self.image)}, {"reconstruction": recon})


class ImageTask(Task[ImageConfig, Image]):
    """Fit one image: pixel regression, evaluation on every pixel, ``reconstruction.png``."""

    name = "image"
    presets = PRESETS

    def load(self, cfg: ImageConfig, source: Path | None) -> Image:
        """The image file ``source``, or the embedded photo when None."""
        return load_embedded_image() if source is None else load_image(source)

    def plan(self, cfg: ImageConfig, data: Image, shard: Shard) -> ImageConfig:
        """A latent pyramid without a resolution gets one node per pixel of the (downscaled) image at
        its finest level: ``[width, height]``, recorded in the run folder's config and the file."""
        pyramid = cfg.field.encoding.pyramid
        if cfg.field.encoding.kind != "pyramid" or pyramid.resolution:
            return cfg
        height, width = downscale(data.pixels, cfg.downscale).shape[:2]
        encoding = dataclasses.replace(
            cfg.field.encoding, pyramid=dataclasses.replace(pyramid, resolution=[width, height])
        )
        return dataclasses.replace(cfg, field=dataclasses.replace(cfg.field, encoding=encoding))

    def build(self, cfg: ImageConfig, data: Image, device: torch.device) -> Setup:
        pixels = downscale(data.pixels, cfg.downscale).to(device)
        height, width, channels = pixels.shape
        model = build_field(cfg.field, in_dim=2, out_dim=channels).to(device)
        mask = training_mask(height, width, cfg.mode).to(device)
        objective = ImageObjective(pixels, mask, cfg.train.batch_size)
        hooks = quantization_hooks(cfg.compression, cfg.train.steps, int(mask.sum()))
        return Setup(model, objective, f"{data.name} {cfg.model}", hooks, extras={"mask": mask})

    def export(self, cfg: ImageConfig, setup: Setup, path: Path) -> int:
        """Write the fitted field to the image file ``path`` with ``compression.bits``-bit weights and an
        8-bit PNG depth (``codec.image.encode_image_field``); returns its size in bytes."""
        height, width, channels = setup.objective.image.shape
        return encode_image_field(path, setup.model, cfg.field, height, width, channels, cfg.compression.bits)

    def evaluate(
        self,
        cfg: ImageConfig,
        data: Image,
        setup: Setup,
        result: FitResult,
        out_dir: Path,
        shard: Shard,
        progress: bool,
    ) -> dict[str, Any] | None:
        """On rank 0: ``reconstruction.png`` and PSNR, SSIM, LPIPS (None when unavailable) on all
        pixels, ``psnr_heldout`` (generalization only: the pixels never trained on), the image
        size and the parameter count."""
        if not shard.main:
            return None
        objective, mask = setup.objective, setup.extras["mask"]
        pixels = objective.image
        height, width, channels = pixels.shape
        with torch.no_grad():
            recon = objective.render(setup.model.eval())
        save_png(out_dir / "reconstruction.png", recon, bits=data.bits)
        metrics: dict[str, Any] = image_metrics(recon, pixels)
        if cfg.mode == "generalization":
            flat = recon.reshape(-1, channels)
            metrics["psnr_heldout"] = psnr(flat[~mask], pixels.reshape(-1, channels)[~mask])
        return metrics | {
            "image": data.name,
            "width": width,
            "height": height,
            "model": cfg.model,
            "mode": cfg.mode,
            "params": count_parameters(setup.model),
        }


IMAGE = ImageTask()
resolve_config = IMAGE.resolve_config


def summarize(per_image: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-image metrics plus their means (a mean is None if any image lacks the metric)."""
    rows = list(per_image.values())
    keys = ["psnr", "ssim", "lpips", "psnr_heldout", "params", "seconds"]
    mean = {k: mean_or_none([r.get(k) for r in rows]) for k in keys if any(k in r for r in rows)}
    first = rows[0]
    return {
        "model": first["model"],
        "mode": first["mode"],
        "steps": first["steps"],
        "device": first["device"],
        "count": len(rows),
        "mean": mean,
        "images": per_image,
    }


def fit_images(
    source: Path | None,
    cfg: ImageConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit an image file, every image of a folder, or (``source=None``) the embedded image.

    A single image writes ``config.json``, ``checkpoint.pt``, ``reconstruction.png`` and
    ``metrics.json`` (see ``ImageTask.evaluate`` and ``tasks.base.run_fit``) to ``out_dir``;
    a folder writes one such subfolder per image and a summary ``metrics.json`` with
    per-image metrics and their means. With ``resume``, finished images are kept and an
    interrupted one continues from its checkpoint. Under torchrun a single image is fitted by
    all ranks together (pixel batches split across them), a folder's images are spread over
    the ranks.
    """
    if source is None or not Path(source).is_dir():
        return fit(IMAGE, source, cfg, out_dir, device, resume, progress)
    return fit_image_files(list_images(Path(source)), cfg, out_dir, device, resume, progress, data_identity(source))


def fit_image_files(
    files: list[Path],
    cfg: ImageConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit each image file into ``out_dir/<stem>`` and write the summary ``metrics.json``; ``out_dir``
    records ``identity`` (that of the folder the files came from) as its data.

    With ``resume``, images whose ``metrics.json`` exists are read back instead of refitted.
    Under torchrun each rank fits one image at a time (image k on rank k mod N) and writes
    that image's folder; rank 0 gathers the metrics and writes the summary.
    """
    out_dir = Path(out_dir)
    cfg.validate()
    torch_device = distributed.init(device)
    shard = distributed.current()

    def fit_one(path: Path) -> dict[str, Any]:
        image_dir = out_dir / path.stem
        done = image_dir / METRICS_NAME
        if resume and done.exists():
            return read_json(done)
        show = progress and shard.main
        if show:
            announce(f"image {files.index(path) + 1} of {len(files)}: {path.name}")
        metrics = run_fit(
            IMAGE,
            cfg,
            load_image(path),
            image_dir,
            torch_device,
            resume=resume,
            progress=show,
            identity=data_identity(path),
        )
        return metrics | {"rank": shard.rank}

    with held_run_dir(out_dir, shard):
        distributed.run_on_main(lambda: prepare_run_dir(out_dir, cfg, resume, IMAGE.name, identity))
        per_image = {path.stem: metrics for path, metrics in distributed.map_gathered(files, fit_one)}
        return distributed.run_on_main(lambda: _write_summary(out_dir, per_image))


def _write_summary(out_dir: Path, per_image: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(per_image)
    write_json(out_dir / METRICS_NAME, summary)
    return summary
