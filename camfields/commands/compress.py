"""Compress a finished image fit (a run folder) into one .camf file: post-training n-bit weights.

The file holds the field config, the image size and the quantized weights; `camfields
decompress` rebuilds the image from it alone. A video fit writes its own file (video.camf);
NeRF and dynamic fields have no file format yet (issue 29).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from camfields.codec.image import MAX_BITS, MIN_BITS, encode_image_field
from camfields.config import from_dict, to_dict
from camfields.errors import CamfieldsError, first_line
from camfields.fields import build_field
from camfields.io.images import load_image
from camfields.tasks.image import IMAGE, ImageConfig
from camfields.training.checkpoint import load_checkpoint, read_json
from camfields.training.loop import CHECKPOINT_NAME
from camfields.training.run_dir import CONFIG_NAME, DATA_KEY, TASK_KEY, with_missing_keys

RECONSTRUCTION_NAME = "reconstruction.png"  # what a finished image fit writes: its size, channels and depth
VIDEO_FILE = "video.camf"


def image_config(run_dir: Path) -> ImageConfig:
    """The image config a run folder records (settings it lacks at their defaults), validated; any other
    task is refused in one sentence."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise CamfieldsError(
            f"{run_dir} is not a run folder: it holds no {CONFIG_NAME} (give the --out folder of a fit)"
        )
    recorded = read_json(path)
    if not isinstance(recorded, dict):
        raise CamfieldsError(f"{path} holds a JSON {type(recorded).__name__}, not the object camfields writes")
    task = recorded.pop(TASK_KEY, None)
    recorded.pop(DATA_KEY, None)
    if task == "video":
        raise CamfieldsError(f"{run_dir} is a video fit, which writes its own file: {run_dir / VIDEO_FILE}")
    if task != IMAGE.name:
        raise CamfieldsError(
            f"{run_dir} holds a {task or 'unnamed'} fit; {task or 'its'} fields cannot be written to a "
            "compressed file yet (issue 29)"
        )
    cfg = from_dict(ImageConfig, with_missing_keys(recorded, to_dict(ImageConfig())), str(path))
    cfg.validate()
    return cfg


def fitted_weights(run_dir: Path) -> dict[str, Any]:
    """The model state of a run folder's checkpoint, its floating tensors checked finite."""
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise CamfieldsError(f"checkpoint {run_dir / CHECKPOINT_NAME} holds no model state")
    broken = [
        k
        for k, v in weights.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    if broken:
        raise CamfieldsError(f"checkpoint {run_dir / CHECKPOINT_NAME} holds NaN or infinite weights ({broken[0]})")
    return weights


def compress(run_dir: Path, bits: int, out: Path) -> dict[str, Any]:
    """Write the image fit in ``run_dir`` to ``out`` with ``bits``-bit weights; returns the file's
    bytes, pixels and bits per pixel (8 * bytes / pixels)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise CamfieldsError(f"{out} already exists; give a new file for --out")
    if not run_dir.is_dir():
        raise CamfieldsError(f"{run_dir} is not a folder; give the --out folder of a finished fit")
    cfg = image_config(run_dir)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        fits = sorted(p.name for p in run_dir.iterdir() if (p / CHECKPOINT_NAME).is_file())
        if fits:
            raise CamfieldsError(
                f"{run_dir} is a folder of {len(fits)} image fits; compress one of them, e.g. {run_dir / fits[0]}"
            )
        raise CamfieldsError(f"{run_dir} holds no {CHECKPOINT_NAME}: the fit has not saved its weights yet")
    if not (run_dir / RECONSTRUCTION_NAME).is_file():
        raise CamfieldsError(
            f"{run_dir} holds no {RECONSTRUCTION_NAME}: finish the fit (--resume) before compressing it"
        )
    reference = load_image(run_dir / RECONSTRUCTION_NAME)
    height, width, channels = reference.pixels.shape
    model = build_field(cfg.field, in_dim=2, out_dim=channels)
    try:
        model.load_state_dict(fitted_weights(run_dir))
    except (RuntimeError, KeyError) as e:
        raise CamfieldsError(
            f"checkpoint {run_dir / CHECKPOINT_NAME} does not fit the model of its {CONFIG_NAME}: {first_line(e)}"
        ) from None
    size = encode_image_field(out, model, cfg.field, height, width, channels, bits, reference.bits)
    return {"bytes": size, "pixels": height * width, "bpp": 8 * size / (height * width)}


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", help="the --out folder of a finished image fit")
    parser.add_argument("--bits", type=int, required=True, help=f"bits per weight, {MIN_BITS} to {MAX_BITS}")
    parser.add_argument("--out", required=True, help="the file to write (.camf); it must not exist")
    args = parser.parse_args(argv)
    if not MIN_BITS <= args.bits <= MAX_BITS:
        raise CamfieldsError(f"--bits must be from {MIN_BITS} to {MAX_BITS}, got {args.bits}")
    result = compress(Path(args.run_dir), args.bits, Path(args.out))
    print(f"wrote {args.out}: {result['bytes']:,} bytes, {result['bpp']:.4g} bpp ({args.bits}-bit weights)")
