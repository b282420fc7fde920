"""Rate-distortion evaluation of the image codec (``camfields eval-rd --task image``).

A sweep point is (model, target parameters, weight bits). Each point's field is fitted once per
image (``fit_key``: one fit per model and size, whatever the bits, as quantization comes after
training; with ``--qat F`` one per bit depth too, the last fraction F of its steps trained
through that quantizer) into ``OUT/<model>_<params>[_qat<bits>bit]/<image>/``, written with
``bits``-bit weights to ``image_<bits>bit.camf`` there (``commands.compress``) and decoded from that file alone. The
field's hidden width is the largest whose parameter count is at most the target; the model's
other settings come from ``--config``.

With ``--rate-weights`` the sweep's size axis is the rate term's weight instead (for models whose
size the image sets, such as a latent pyramid): a point is (model, rate weight, weight bits),
fitted at its model's own size with quantization-aware training at its bits (the last ``--qat``
fraction of the steps, else the config's ``compression.qat_fraction``) and the loss's rate term at
that weight, into ``OUT/<model>_rate<weight>_qat<bits>bit/<image>/``.

Every codec is measured on the same references: each image area-downscaled by the config's
``downscale`` and rounded to 8 bits. PSNR (RGB) and MS-SSIM are those of the decoded image
rounded to 8 bits; bpp = 8 * file bytes / pixels. A curve is averaged over the images,
CompressAI style: per point, the mean bpp, PSNR and MS-SSIM.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camfields.cli import comma_floats, comma_ints, comma_names
from camfields.codec import image_baselines
from camfields.codec.fields import MAX_BITS, MIN_BITS
from camfields.codec.image import decode_image
from camfields.codec.rd_report import bd_table, curve, plot, print_summary, same_rate_table
from camfields.commands.compress import compress
from camfields.errors import CamfieldsError
from camfields.fields import MAX_WIDTH, FieldConfig, build_field, count_parameters
from camfields.io.images import downscale, list_images, load_image, to_uint8
from camfields.metrics import ms_ssim, psnr
from camfields.runtime import device_name, resolve_device
from camfields.tasks.image import IMAGE, PRESETS, ImageConfig, resolve_config
from camfields.training.checkpoint import write_json
from camfields.training.fit import fit
from camfields.training.progress import announce, phase

#: the image task's defaults of the options the video task shares
DEFAULTS = {
    "config": "image/kodak_rd_cpu",
    "models": "cam,ffn",
    "params": "3000,6000,12000,24000",
    "bits": "6,8",
    "codecs": ",".join(image_baselines.CODECS),
}


@dataclass(frozen=True)
class Point:
    """One camfields point of the sweep: a model at a target parameter count and weight bit depth."""

    model: str
    params: int | None
    bits: int
    #: the rate term's weight of a ``--rate-weights`` sweep (``params`` is then None)
    rate_weight: float | None = None


#: a fit: (model, target parameters or None, QAT bit depth or None, rate weight or None)
FitKey = tuple[str, int | None, int | None, float | None]


def fit_key(point: Point, qat: bool = False) -> FitKey:
    """The fit a point is coded from: one per model and size (post-training quantization at any
    bits), or with ``qat`` (always with a rate weight) one per bit depth too (quantization-aware
    training at that depth)."""
    qat = qat or point.rate_weight is not None
    return point.model, point.params, point.bits if qat else None, point.rate_weight


def fit_folder(key: FitKey) -> str:
    """The folder (under --out) of a fit key's fits, one subfolder per image."""
    model, params, bits, rate_weight = key
    size = f"{params}" if rate_weight is None else f"rate{rate_weight:g}"
    return f"{model}_{size}" + (f"_qat{bits}bit" if bits is not None else "")


def fit_config(key: FitKey, config: str, overrides: dict[str, Any], qat: float) -> ImageConfig:
    """The image config of a fit key: the model's, sized to its parameters, with QAT at its bits;
    or, with a rate weight, at its own size with QAT at its bits (``qat``, else the config's
    fraction) and that rate weight."""
    model, params, bits, rate_weight = key
    if rate_weight is not None:
        compression = {"bits": bits, "rate_weight": rate_weight} | ({"qat_fraction": qat} if qat else {})
        cfg = resolve_config(model, config, {**overrides, "compression": compression})
        if not cfg.compression.qat_fraction:
            raise CamfieldsError(
                f"--rate-weights trains through the quantizer, but {model}'s config has compression.qat_fraction = 0; "
                "pass --qat FRACTION"
            )
        return cfg
    if bits is not None:
        overrides = {**overrides, "compression": {"bits": bits, "qat_fraction": qat}}
    return sized_config(resolve_config(model, config, overrides), params)


def field_params(field: FieldConfig, channels: int = 3) -> int:
    """Parameters of the image field ``field`` describes (built without memory)."""
    with torch.device("meta"):
        return count_parameters(build_field(field, in_dim=2, out_dim=channels))


def sized_config(cfg: ImageConfig, params: int) -> ImageConfig:
    """``cfg`` with the largest hidden width whose field has at most ``params`` parameters."""
    low, high = 1, MAX_WIDTH
    smallest = field_params(dataclasses.replace(cfg.field, hidden=low))
    if smallest > params:
        raise CamfieldsError(
            f"--params {params} is below the smallest {cfg.model} field of this config ({smallest} parameters "
            "at hidden width 1)"
        )
    while low < high:  # the parameter count grows with the width
        mid = (low + high + 1) // 2
        if field_params(dataclasses.replace(cfg.field, hidden=mid)) <= params:
            low = mid
        else:
            high = mid - 1
    return dataclasses.replace(cfg, field=dataclasses.replace(cfg.field, hidden=low))


def image_files(source: Path) -> list[Path]:
    """An image file as a list of one, or the images of a folder (sorted); one sentence otherwise."""
    if source.is_dir():
        return list_images(source)
    if not source.is_file():
        raise CamfieldsError(f"--images {source} is neither an image file nor a folder")
    return [source]


def reference(path: Path, factor: int) -> torch.Tensor:
    """The image every codec is measured against: ``path`` downscaled by ``factor``, at 8-bit levels (H, W, 3)."""
    pixels = load_image(path).pixels
    if pixels.shape[2] != 3:
        raise CamfieldsError(f"eval-rd --task image takes RGB images; {path} has {pixels.shape[2]} channels")
    return to_uint8(downscale(pixels, factor)).float() / 255.0


def measure(decoded: torch.Tensor, target: torch.Tensor, size: int) -> dict[str, float]:
    """bpp of ``size`` file bytes, PSNR and MS-SSIM of ``decoded`` (H, W, 3) rounded to 8 bits against ``target``."""
    decoded = to_uint8(decoded).float() / 255.0
    pixels = target.shape[0] * target.shape[1]
    return {"bytes": size, "bpp": 8 * size / pixels, "psnr": psnr(decoded, target), "ms_ssim": ms_ssim(decoded, target)}


def mean_point(per_image: dict[str, dict[str, float]], **settings: Any) -> dict[str, Any]:
    """A curve point: ``settings``, the mean bpp, PSNR and MS-SSIM over the images, and the per-image values."""
    rows = list(per_image.values())
    means = {key: sum(r[key] for r in rows) / len(rows) for key in ("bpp", "psnr", "ms_ssim")}
    return {**settings, **means, "images": per_image}


def run_baselines(
    references: dict[str, torch.Tensor], codecs: list[str], progress: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """One curve per codec over its sweep, averaged over ``references``, and notes of the codecs
    this Pillow lacks."""
    curves, notes = [], []
    for name in codecs:
        if not image_baselines.available(name):
            notes.append(f"{name} is unavailable in this Pillow")
            continue
        codec = image_baselines.CODECS[name]
        points = []
        label = f"{name}, {len(codec.sweep)} {codec.setting} values" if progress else None
        for value in phase(codec.sweep, len(codec.sweep), label):
            per_image = {}
            for stem, target in references.items():
                coded = image_baselines.code_image(target, name, value)
                per_image[stem] = measure(coded.image, target, coded.bytes)
            points.append(mean_point(per_image, **{codec.setting: value}))
        sweep = ",".join(f"{v:g}" for v in codec.sweep)
        curves.append(curve(name, f"{codec.description}, {codec.setting} {sweep}", points))
    return curves, notes


def code_fit(run_dir: Path, bits: int, target: torch.Tensor, device: torch.device) -> dict[str, float]:
    """The fit in ``run_dir`` written with ``bits``-bit weights to its ``image_<bits>bit.camf``
    (replacing an older one) and measured from the file alone against ``target``."""
    path = run_dir / f"image_{bits}bit.camf"
    path.unlink(missing_ok=True)
    compress(run_dir, bits, path)
    decoded = decode_image(path, device).cpu()
    if decoded.shape != target.shape:
        raise CamfieldsError(f"{path} decodes to {tuple(decoded.shape)}, not the reference's {tuple(target.shape)}")
    return measure(decoded, target, path.stat().st_size)


def run(args: argparse.Namespace) -> None:
    """``camfields eval-rd --task image`` with the parsed options (see ``commands.eval_rd``)."""
    models = comma_names(args.models, PRESETS, "--models")
    rate_weights = comma_floats(args.rate_weights, "--rate-weights") if args.rate_weights else None
    sizes: list[int | None] = [None] if rate_weights else comma_ints(args.params)
    depths = comma_ints(args.bits)
    if not models or not sizes or not depths:
        raise CamfieldsError("--models, --params and --bits each need at least one value")
    bad = [b for b in depths if not MIN_BITS <= b <= MAX_BITS]
    if bad:
        raise CamfieldsError(f"--bits must be from {MIN_BITS} to {MAX_BITS}, got {bad[0]}")
    codecs = comma_names(args.codecs, image_baselines.CODECS, "--codecs")
    source, out = Path(args.images), Path(args.out)
    files = image_files(source)
    overrides = {"train": {"steps": args.steps}} if args.steps else {}
    qat = args.qat or 0.0
    if not 0 <= qat <= 1:
        raise CamfieldsError(f"--qat must be a fraction of the steps in [0, 1], got {qat}")
    weights: list[float | None] = rate_weights or [None]
    points = [
        Point(model, params, bits, weight)
        for weight in weights
        for params in sizes
        for bits in depths
        for model in models
    ]
    keys = {p: fit_key(p, qat > 0) for p in points}
    configs = {key: fit_config(key, args.config, overrides, qat) for key in keys.values()}
    factors = {cfg.downscale for cfg in configs.values()}
    if len(factors) > 1:
        raise CamfieldsError(f"every model of --config must fit the same downscale, got {sorted(factors)}")
    factor = factors.pop()
    device = resolve_device(args.device)
    progress = not args.quiet

    references = {path.stem: reference(path, factor) for path in files}
    baseline_curves, notes = run_baselines(references, codecs, progress)
    measured: dict[Point, dict[str, dict[str, float]]] = {p: {} for p in points}
    fit_metrics: dict[tuple[str, int, int | None], dict[str, dict[str, Any]]] = {key: {} for key in configs}
    for key, cfg in configs.items():
        coded = [p for p in points if keys[p] == key]
        for path in files:
            if progress:
                size = f"({key[1]} params at most)" if key[3] is None else f"rate weight {key[3]:g}"
                announce(f"fit {cfg.model}: hidden {cfg.field.hidden} {size}, {path.name}")
            run_dir = out / fit_folder(key) / path.stem
            # resuming checks the folder's config: a finished fit is re-encoded, a stale one refused
            fit_metrics[key][path.stem] = fit(
                IMAGE, path, cfg, run_dir, str(device), resume=True, progress=progress, extend=False
            )
            for point in coded:
                measured[point][path.stem] = code_fit(run_dir, point.bits, references[path.stem], device)

    curves = []
    for model in models:
        for bits in depths:
            model_points = []
            for point in (p for p in points if (p.model, p.bits) == (model, bits)):
                fitted = fit_metrics[keys[point]]
                settings = {
                    "params": next(iter(fitted.values()))["params"],
                    "target_params": point.params,
                    "hidden": configs[keys[point]].field.hidden,
                    "bits": bits,
                    "psnr_float": sum(m["psnr"] for m in fitted.values()) / len(fitted),
                }
                if point.rate_weight is not None:
                    settings["rate_weight"] = point.rate_weight
                model_points.append(mean_point(measured[point], **settings))
            fraction = configs[keys[point]].compression.qat_fraction  # what the fits trained with
            how = f"QAT over the last {fraction:g} of the steps" if fraction else "post-training"
            size = f"rate weights {args.rate_weights}" if rate_weights else f"at most {args.params} parameters"
            description = f"camfields {model}, {size}, {bits}-bit weights ({how})"
            curves.append(curve(f"camfields-{model}-{bits}bit", description, model_points))
    ours = [c["name"] for c in curves]
    curves += baseline_curves
    pairs = [(name, c["name"]) for name in ours for c in baseline_curves]
    pairs += [
        (f"camfields-{first}-{bits}bit", f"camfields-{second}-{bits}bit")
        for bits in depths
        for i, first in enumerate(models)
        for second in models[i + 1 :]
    ]
    bd = bd_table(curves, pairs)
    size_key = "rate_weight" if rate_weights else "params"
    same_rate = same_rate_table(curves, ours, size_key)
    heights, widths = {t.shape[0] for t in references.values()}, {t.shape[1] for t in references.values()}
    report = {
        "task": "image",
        "images": args.images,
        "count": len(files),
        "downscale": factor,
        "sizes": {stem: [t.shape[1], t.shape[0]] for stem, t in references.items()},
        "steps": next(iter(configs.values())).train.steps,
        "qat_fraction": qat,
        "rate_weights": rate_weights,
        "device": device_name(device),
        "notes": notes,
        "bd": bd,
        "same_rate": same_rate,
        "codecs": curves,
    }
    write_json(out / "rd.json", report)
    size = f"{widths.pop()}x{heights.pop()}" if len(heights) == len(widths) == 1 else "mixed sizes"
    plot(curves, out / "rd.png", f"{source.name}: {len(files)} image{'s' * (len(files) > 1)}, {size}")
    print_summary(curves, same_rate, size_key, bd, notes, name_width=22, point_width=36)
    print(f"wrote {out / 'rd.json'} and {out / 'rd.png'}")
