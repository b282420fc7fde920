"""Compress a finished fit (a run folder) of any task into one .camf file with n-bit weights.

An image fit gives its field and image size; a NeRF or dynamic fit its radiance field,
occupancy cells and default camera (read from the fitted scene, which must still be where the
fit found it); `camfields decompress` rebuilds the image or renders the scene from the file
alone. A video fit trained through its quantizer at the depth it was fitted for: its own
``video.camf`` is copied, and another depth is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from camfields.codec.fields import MAX_BITS, MIN_BITS
from camfields.codec.image import encode_image_field
from camfields.codec.video import clip_size
from camfields.config import from_dict, to_dict, upgraded
from camfields.errors import CamfieldsError, first_line
from camfields.fields import build_field
from camfields.io.images import load_image
from camfields.tasks.dynamic import DYNAMIC
from camfields.tasks.image import IMAGE
from camfields.tasks.nerf import NERF
from camfields.tasks.radiance import SceneTask
from camfields.tasks.video import VIDEO
from camfields.training.checkpoint import load_checkpoint, read_json
from camfields.training.fit import Task
from camfields.training.loop import CHECKPOINT_NAME
from camfields.training.run_dir import CONFIG_NAME, DATA_KEY, TASK_KEY, with_missing_keys

RECONSTRUCTION_NAME = "reconstruction.png"  # what a finished image fit writes: its size, channels and depth
VIDEO_FILE = "video.camf"
#: the tasks whose run folders this command reads, by the name config.json records
TASKS: dict[str, Task] = {task.name: task for task in (IMAGE, NERF, DYNAMIC, VIDEO)}


def run_config(run_dir: Path) -> tuple[Task, Any, dict[str, Any] | None]:
    """The task, config (settings it lacks at their defaults, validated) and fitted data's identity
    that a run folder records; one sentence when it is not a run folder of a known task."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise CamfieldsError(
            f"{run_dir} is not a run folder: it holds no {CONFIG_NAME} (give the --out folder of a fit)"
        )
    recorded = read_json(path)
    if not isinstance(recorded, dict):
        raise CamfieldsError(f"{path} holds a JSON {type(recorded).__name__}, not the object camfields writes")
    name = recorded.pop(TASK_KEY, None)
    data = recorded.pop(DATA_KEY, None)
    if name not in TASKS:
        raise CamfieldsError(f"{path} names the task {name!r}; compress knows {', '.join(TASKS)}")
    task = TASKS[name]
    config_class = task.presets.config_class
    recorded = with_missing_keys(upgraded(recorded, config_class), to_dict(config_class()))
    cfg = from_dict(config_class, recorded, str(path))
    cfg.validate()
    return task, cfg, data if isinstance(data, dict) else None


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


def _load_weights(model: torch.nn.Module, run_dir: Path) -> torch.nn.Module:
    try:
        model.load_state_dict(fitted_weights(run_dir))
    except (RuntimeError, KeyError) as e:
        raise CamfieldsError(
            f"checkpoint {run_dir / CHECKPOINT_NAME} does not fit the model of its {CONFIG_NAME}: {first_line(e)}"
        ) from None
    return model


def _image(run_dir: Path, cfg: Any, bits: int, out: Path) -> tuple[int, int]:
    """Write an image fit; returns (bytes, pixels)."""
    if not (run_dir / RECONSTRUCTION_NAME).is_file():
        raise CamfieldsError(
            f"{run_dir} holds no {RECONSTRUCTION_NAME}: finish the fit (--resume) before compressing it"
        )
    reference = load_image(run_dir / RECONSTRUCTION_NAME)
    height, width, channels = reference.pixels.shape
    model = _load_weights(build_field(cfg.field, in_dim=2, out_dim=channels), run_dir)
    size = encode_image_field(out, model, cfg.field, height, width, channels, bits, reference.bits)
    return size, height * width


def _scene(
    run_dir: Path, task: SceneTask, cfg: Any, data: dict[str, Any] | None, bits: int, out: Path
) -> tuple[int, int]:
    """Write a NeRF or dynamic fit through its task's ``export``, the model and camera built from the
    fitted scene as the fit built them; returns (bytes, 0: a scene has no pixel count of its own)."""
    source = Path(data["path"]) if data and isinstance(data.get("path"), str) else None
    if source is None or not source.exists():
        raise CamfieldsError(
            f"{run_dir}: the scene it fitted ({source or 'unrecorded'}) is gone; the file's default camera is "
            "read from it, so put it back where it was"
        )
    # the task builds the model and its camera as the fit did (ray space, turntable path), then exports it
    setup = task.build(cfg, task.load(cfg, source), torch.device("cpu"))
    _load_weights(setup.model, run_dir)
    with_bits = dataclasses.replace(cfg, compression=dataclasses.replace(cfg.compression, bits=bits))
    return task.export(with_bits, setup, out), 0


def _video(run_dir: Path, cfg: Any, bits: int, out: Path) -> tuple[int, int]:
    """Copy a video fit's own file when ``bits`` is the depth it was fitted for; returns (bytes, pixels of the clip)."""
    if bits != cfg.compression.bits:
        raise CamfieldsError(
            f"{run_dir} is a video fit trained through its {cfg.compression.bits}-bit quantizer: its file is "
            f"{run_dir / VIDEO_FILE} (--bits {cfg.compression.bits}); refit with [compression] bits = {bits} "
            "for another depth"
        )
    if not (run_dir / VIDEO_FILE).is_file():
        raise CamfieldsError(f"{run_dir} holds no {VIDEO_FILE}: finish the fit (--resume) before compressing it")
    frames, height, width = clip_size(run_dir / VIDEO_FILE)
    shutil.copyfile(run_dir / VIDEO_FILE, out)
    return out.stat().st_size, frames * height * width


def compress(run_dir: Path, bits: int, out: Path) -> dict[str, Any]:
    """Write the fit in ``run_dir`` to ``out`` with ``bits``-bit weights; returns the task, the file's
    bytes, the pixels (an image's; a clip's frames together; None for a scene) and bits per pixel
    (None for a scene)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise CamfieldsError(f"{out} already exists; give a new file for --out")
    if not run_dir.is_dir():
        raise CamfieldsError(f"{run_dir} is not a folder; give the --out folder of a finished fit")
    task, cfg, data = run_config(run_dir)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        fits = sorted(p.name for p in run_dir.iterdir() if (p / CHECKPOINT_NAME).is_file())
        if fits:
            raise CamfieldsError(
                f"{run_dir} is a folder of {len(fits)} image fits; compress one of them, e.g. {run_dir / fits[0]}"
            )
        raise CamfieldsError(f"{run_dir} holds no {CHECKPOINT_NAME}: the fit has not saved its weights yet")
    if task is IMAGE:
        size, pixels = _image(run_dir, cfg, bits, out)
    elif task is VIDEO:
        size, pixels = _video(run_dir, cfg, bits, out)
    else:
        size, pixels = _scene(run_dir, task, cfg, data, bits, out)
    return {"task": task.name, "bytes": size, "pixels": pixels or None, "bpp": 8 * size / pixels if pixels else None}


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", help="the --out folder of a finished fit (image, nerf, dynamic or video)")
    parser.add_argument("--bits", type=int, required=True, help=f"bits per weight, {MIN_BITS} to {MAX_BITS}")
    parser.add_argument("--out", required=True, help="the file to write (.camf); it must not exist")
    args = parser.parse_args(argv)
    if not MIN_BITS <= args.bits <= MAX_BITS:
        raise CamfieldsError(f"--bits must be from {MIN_BITS} to {MAX_BITS}, got {args.bits}")
    result = compress(Path(args.run_dir), args.bits, Path(args.out))
    rate = f", {result['bpp']:.4g} bpp" if result["bpp"] is not None else ""
    print(f"wrote {args.out}: {result['task']} field, {result['bytes']:,} bytes{rate} ({args.bits}-bit weights)")
