"""Image fitting: regression (all pixels) and generalization (every 2nd pixel per axis).

Pixel (row i, column j) of an H x W image sits at coordinate
``(x, y) = ((2j + 1) / W - 1, (2i + 1) / H - 1)``: pixel centres in (-1, 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camfields import distributed
from camfields.config import check_choice, resolve_preset_config, to_dict
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.fields import EncodingConfig, FieldConfig, HashGridConfig, ModulationConfig, build_field
from camfields.io.images import Image, downscale, list_images, load_embedded_image, load_image, save_png
from camfields.metrics import image_metrics, psnr, ssim
from camfields.runtime import device_name
from camfields.training import CoordinateRegression, Evaluation, TrainConfig, predict, train
from camfields.training.checkpoint import read_json, write_json
from camfields.training.run_dir import prepare_run_dir

MODES = ("regression", "generalization")

#: The image models: the FFN baseline of the papers, FFN + CAM as in the CAM paper,
#: and an Instant-NGP-style hash-grid field.
MODEL_PRESETS: dict[str, Callable[[], FieldConfig]] = {
    "ffn": lambda: FieldConfig(encoding=EncodingConfig("fourier", num_features=256, sigma=10.0)),
    "cam": lambda: FieldConfig(
        encoding=EncodingConfig("fourier", num_features=256, sigma=10.0),
        norm="layer",
        modulation=ModulationConfig(grid="dense", resolution=[32, 32], per_channel=False),
    ),
    "ngp": lambda: FieldConfig(
        encoding=EncodingConfig(
            "hashgrid",
            hash=HashGridConfig(levels=16, features_per_level=2, log2_table_size=14, base_resolution=8, growth=1.33),
        ),
        hidden=64,
        depth=2,
    ),
}


@dataclass
class ImageConfig:
    """A resolved image fit: the model preset it started from, the data mode and the training."""

    model: str = "cam"
    mode: str = "regression"
    downscale: int = 1
    field: FieldConfig = dataclasses.field(default_factory=MODEL_PRESETS["cam"])
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def validate(self) -> None:
        check_choice(self.mode, MODES, "mode")
        if self.downscale < 1:
            raise CamfieldsError(f"downscale must be a positive integer, got {self.downscale}")
        self.train.validate()


def resolve_config(
    model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
) -> ImageConfig:
    """Layer the model preset, a config file (path or ``scenes/`` preset) and overrides.

    Args:
        model: "ffn", "cam" or "ngp"; defaults to the file's ``model`` key, else "cam".
        config: a TOML file or preset name such as "image/natural".
        overrides: nested dict applied last, e.g. ``{"train": {"steps": 100}}``.
    """
    presets = {name: to_dict(ImageConfig(model=name, field=preset())) for name, preset in MODEL_PRESETS.items()}
    return resolve_preset_config(ImageConfig, presets, "cam", model, config, overrides)


def pixel_coords(height: int, width: int) -> torch.Tensor:
    """Pixel-centre coordinates (H * W, 2) as (x, y) in (-1, 1), row-major."""
    ys = (2 * torch.arange(height, dtype=torch.float32) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float32) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


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


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters (fixed buffers such as Fourier projections excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fit_image(
    image: Image,
    cfg: ImageConfig,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Fit one image and write ``reconstruction.png`` and ``metrics.json`` to ``out_dir``.

    With ``shard`` (several ranks fitting this image together) each rank trains on its
    slice of every pixel batch and rank 0 writes the files; without it this process fits
    and writes alone. Returns the metrics (on every rank): psnr, ssim, lpips (None when
    unavailable) on all pixels, psnr_heldout (generalization only: the pixels never
    trained on), params, steps, seconds, device, and the image size.
    """
    pixels = downscale(image.pixels, cfg.downscale).to(device)
    height, width, channels = pixels.shape
    torch.manual_seed(cfg.train.seed)
    model = build_field(cfg.field, in_dim=2, out_dim=channels).to(device)
    mask = training_mask(height, width, cfg.mode).to(device)
    objective = ImageObjective(pixels, mask, cfg.train.batch_size)
    result = train(
        model,
        objective,
        cfg.train,
        out_dir,
        resume=resume,
        progress=progress,
        description=f"{image.name} {cfg.model}",
        shard=shard,
    )
    if shard is not None and not shard.main:
        return distributed.broadcast(None)
    model.eval()
    with torch.no_grad():
        recon = objective.render(model)
    save_png(Path(out_dir) / "reconstruction.png", recon, bits=image.bits)
    metrics: dict[str, Any] = image_metrics(recon, pixels)
    if cfg.mode == "generalization":
        flat = recon.reshape(-1, channels)
        metrics["psnr_heldout"] = psnr(flat[~mask], pixels.reshape(-1, channels)[~mask])
    metrics.update(
        image=image.name,
        width=width,
        height=height,
        model=cfg.model,
        mode=cfg.mode,
        params=count_parameters(model),
        steps=result.steps,
        seconds=round(result.seconds, 3),
        ranks=1 if shard is None else shard.world,
        resumed_from=result.resumed_from,
        device=device_name(device),
    )
    write_json(Path(out_dir) / "metrics.json", metrics)
    return distributed.broadcast(metrics) if shard is not None else metrics


def _mean(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(numbers) / len(numbers) if len(numbers) == len(values) and numbers else None


def summarize(per_image: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-image metrics plus their means (a mean is None if any image lacks the metric)."""
    rows = list(per_image.values())
    keys = ["psnr", "ssim", "lpips", "psnr_heldout", "params", "seconds"]
    mean = {k: _mean([r.get(k) for r in rows]) for k in keys if any(k in r for r in rows)}
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


def _start_run(cfg: ImageConfig, out_dir: Path, device: str, resume: bool) -> torch.device:
    """Check the config, join the ranks (if launched by torchrun), pick the device, then
    record the config in (or check it against) ``out_dir`` on rank 0."""
    cfg.validate()
    torch_device = distributed.init(device)
    distributed.run_on_main(lambda: prepare_run_dir(out_dir, cfg, resume))
    return torch_device


def fit_images(
    source: Path | None,
    cfg: ImageConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit an image file, every image of a folder, or (``source=None``) the embedded image.

    A single image writes its outputs to ``out_dir``; a folder writes one subfolder per
    image and a summary ``metrics.json`` with per-image metrics and their means. With
    ``resume``, finished images are kept and an interrupted one continues from its checkpoint.
    Under torchrun a single image is fitted by all ranks together (pixel batches split
    across them), a folder's images are spread over the ranks.
    """
    if source is None or not Path(source).is_dir():
        image = load_embedded_image() if source is None else load_image(Path(source))
        torch_device = _start_run(cfg, Path(out_dir), device, resume)
        return fit_image(image, cfg, Path(out_dir), torch_device, resume, progress, distributed.current())

    return fit_image_files(list_images(Path(source)), cfg, out_dir, device, resume, progress)


def fit_image_files(
    files: list[Path],
    cfg: ImageConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit each image file into ``out_dir/<stem>`` and write the summary ``metrics.json``.

    With ``resume``, images whose ``metrics.json`` exists are read back instead of refitted.
    Under torchrun each rank fits one image at a time (image k on rank k mod N) and writes
    that image's folder; rank 0 gathers the metrics and writes the summary.
    """
    out_dir = Path(out_dir)
    torch_device = _start_run(cfg, out_dir, device, resume)
    rank = distributed.current().rank

    def fit_one(path: Path) -> dict[str, Any]:
        image_dir = out_dir / path.stem
        done = image_dir / "metrics.json"
        if resume and done.exists():
            return read_json(done)
        show = progress and rank == 0
        return fit_image(load_image(path), cfg, image_dir, torch_device, resume, show) | {"rank": rank}

    per_image = {path.stem: metrics for path, metrics in distributed.map_gathered(files, fit_one)}
    return distributed.run_on_main(lambda: _write_summary(out_dir, per_image))


def _write_summary(out_dir: Path, per_image: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = summarize(per_image)
    write_json(out_dir / "metrics.json", summary)
    return summary
