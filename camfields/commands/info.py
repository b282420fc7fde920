"""Show what a run folder or a .camf bitstream holds: task, model, data, steps, evaluation, time, sizes.

A run folder is what a fit writes to --out (config.json, checkpoint.pt, metrics.json); a
bitstream is a compressed video or image (.camf). What a folder does not record shows as "not recorded".
--json prints the same facts as one JSON object (null where not recorded).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from camfields.codec.bitstream import MAGIC, read_bitstream
from camfields.codec.image import IMAGE_FORMAT
from camfields.errors import CamfieldsError
from camfields.io.identity import describe
from camfields.training.checkpoint import load_checkpoint, read_json
from camfields.training.fit import METRICS_NAME
from camfields.training.loop import CHECKPOINT_NAME
from camfields.training.run_dir import CONFIG_NAME, DATA_KEY, TASK_KEY, lock_holder

RUN_FILES = (CONFIG_NAME, CHECKPOINT_NAME, METRICS_NAME)
BITSTREAM_NAME = "video.camf"  # what a video fit writes beside its metrics
NOT_RECORDED = "not recorded"
#: evaluation entries of metrics.json, with their labels; ``psnr_<n>bit`` (NeRF with n-bit weights) too
EVALUATION_LABELS = {
    "psnr": "PSNR",
    "psnr_heldout": "held-out PSNR",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS",
}
QUANTIZED_PSNR = re.compile(r"psnr_(\d+)bit")


def _number(value: Any) -> int | float | None:
    """``value`` when it is a finite number (not a bool), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _entry(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...``, or None when a level is missing or not a JSON object."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _identity(value: Any) -> dict[str, Any] | None:
    """A recorded data identity (``io.identity.data_identity``: path, bytes, sha256, files of a folder), or
    None when ``value`` is not one."""
    ok = isinstance(value, dict) and _text(value.get("path")) and _text(value.get("sha256"))
    return value if ok and isinstance(value.get("bytes"), int) and isinstance(value.get("files", 0), int) else None


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file does not exist."""
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise CamfieldsError(f"{path} holds a JSON {type(data).__name__}, not the object camfields writes")
    return data


def bitstream_facts(path: Path) -> dict[str, Any]:
    """The header of a .camf file (checksum verified): format, frames (an image: 1), size (a scene: its
    views'), the weights' bit depth, tensors, weights, file bytes and bits per pixel (None where the
    header does not give frames and size, as for a scene)."""
    stream = read_bitstream(path)
    config = stream.config if isinstance(stream.config, dict) else {}
    image = config.get("format") == IMAGE_FORMAT
    frames = 1 if image else _number(config.get("frames"))
    size = config.get("camera") if isinstance(config.get("camera"), dict) else config  # a scene's: its views'
    width, height = _number(size.get("width")), _number(size.get("height"))
    pixels = frames * width * height if frames and width and height else None
    return {
        "path": str(path),
        "kind": "bitstream",
        "format": _text(config.get("format")),
        "frames": frames,
        "width": width,
        "height": height,
        # an image's or a scene's buffers take more bits than its weights
        "bits": _number(config.get("weight_bits")) if "weight_bits" in config else stream.bits,
        "tensors": len(stream.tensors),
        "weights": sum(math.prod(t.shape) for t in stream.tensors),
        "bytes": stream.file_bytes,
        "bpp": 8 * stream.file_bytes / pixels if pixels else None,
    }


def _checkpoint(path: Path) -> dict[str, Any] | None:
    """Step, seconds and stored values (the model state's tensor elements) of a checkpoint; None if absent."""
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise CamfieldsError(f"checkpoint {path} holds a {type(state).__name__}, not a camfields checkpoint")
    weights = state.get("model")
    values = sum(v.numel() for v in weights.values() if hasattr(v, "numel")) if isinstance(weights, dict) else None
    return {"step": _number(state.get("step")), "seconds": _number(state.get("seconds")), "values": values}


def _evaluation(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The quality entries of metrics.json (a folder of images: their means) and the step they were taken at."""
    source = metrics.get("mean") if isinstance(metrics.get("mean"), dict) else metrics
    keys = [k for k in source if k in EVALUATION_LABELS or QUANTIZED_PSNR.fullmatch(k)]
    if not keys:
        return None
    return {"step": _number(metrics.get("steps"))} | {k: _number(source[k]) for k in keys}


def _parts(folder: Path) -> dict[str, int] | None:
    """How many subfolders (a folder of images: one per image) hold a finished fit or only a checkpoint."""
    subfolders = [p for p in sorted(folder.iterdir()) if p.is_dir() and any((p / n).is_file() for n in RUN_FILES)]
    if not subfolders:
        return None
    finished = sum((p / METRICS_NAME).is_file() for p in subfolders)
    return {"finished": finished, "unfinished": len(subfolders) - finished}


def _seconds(metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> float | None:
    """Training seconds: a folder of images' sum over its images, else those of the later record
    (metrics.json, or a checkpoint written after it by an extension)."""
    if isinstance(metrics.get("images"), dict):
        times = [_number(_entry(m, "seconds")) for m in metrics["images"].values()]
        return sum(t for t in times if t is not None) if any(t is not None for t in times) else None
    seconds, steps = _number(metrics.get("seconds")), _number(metrics.get("steps"))
    if checkpoint is None or checkpoint["step"] is None or (seconds is not None and (steps or 0) >= checkpoint["step"]):
        return seconds
    return checkpoint["seconds"]


def _state(holder: str | None, done: Any, planned: Any, metrics: Any, checkpoint: Any) -> str:
    if holder is not None:
        return f"running (process {holder})"
    if metrics is not None and (done is None or planned is None or done >= planned):
        return "finished"
    return "stopped" if checkpoint is not None else "not started"


def run_facts(folder: Path) -> dict[str, Any]:
    """What a run folder records (None for what it does not): see the module docstring and docs/runs.md."""
    config, metrics = _json_object(folder / CONFIG_NAME), _json_object(folder / METRICS_NAME)
    checkpoint = _checkpoint(folder / CHECKPOINT_NAME)
    if config is None and metrics is None and checkpoint is None:
        raise CamfieldsError(
            f"{folder} is not a run folder: it holds none of {', '.join(RUN_FILES)} (give the --out folder of a fit)"
        )
    config, recorded = config or {}, metrics or {}
    done = max((s for s in (_entry(checkpoint, "step"), _number(recorded.get("steps"))) if s is not None), default=None)
    planned, span = _number(_entry(config, "train", "steps")), _number(_entry(config, "train", "schedule_steps"))
    checkpoints = [folder / CHECKPOINT_NAME] if checkpoint else sorted(folder.glob(f"*/{CHECKPOINT_NAME}"))
    holder = lock_holder(folder)
    return {
        "path": str(folder),
        "kind": "run folder",
        "task": _text(config.get(TASK_KEY)),
        "model": _text(config.get("model")) or _text(recorded.get("model")),
        "state": _state(holder, done, planned, metrics, checkpoint),
        "data": _identity(config.get(DATA_KEY)),
        "builtin_data": DATA_KEY in config and config[DATA_KEY] is None,
        "steps": {
            "done": done,
            "planned": planned,
            "schedule_steps": span,
            "past_schedule": bool(span and planned and span < planned),  # extended, or planned longer
        },
        "evaluation": _evaluation(metrics) if metrics else None,
        "params": _number(recorded.get("params")) or _number(_entry(recorded, "mean", "params")),
        "stored_values": _entry(checkpoint, "values") if metrics is None else None,
        "seconds": _seconds(recorded, checkpoint),
        "checkpoints": len(checkpoints),
        "checkpoint_bytes": sum(p.stat().st_size for p in checkpoints) if checkpoints else None,
        "device": _text(recorded.get("device")),
        "resumed_from": _number(recorded.get("resumed_from")),
        "images": _parts(folder),
        "bitstream": bitstream_facts(folder / BITSTREAM_NAME) if (folder / BITSTREAM_NAME).is_file() else None,
    }


def facts(path: Path) -> dict[str, Any]:
    """The facts of a run folder (or a file of one: config.json, checkpoint.pt, metrics.json) or a .camf."""
    path = Path(path)
    if not path.exists():
        raise CamfieldsError(f"{path} does not exist")
    try:
        if path.is_dir() or path.name in RUN_FILES:
            return run_facts(path if path.is_dir() else path.parent)
        with open(path, "rb") as f:
            is_bitstream = path.suffix == ".camf" or f.read(len(MAGIC)) == MAGIC
    except OSError as e:
        raise CamfieldsError(f"cannot read {e.filename or path}: {e.strerror or e}") from None
    if not is_bitstream:
        raise CamfieldsError(f"{path} is neither a run folder nor a .camf bitstream")
    return bitstream_facts(path)


def human_seconds(seconds: float) -> str:
    """E.g. '0.7 s', '2 min 05 s', '3 h 04 min'."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def human_bytes(size: int) -> str:
    """E.g. '852 B', '98.2 KiB', '1.5 GiB'."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _evaluation_text(evaluation: dict[str, Any]) -> str:
    shown, missing = [], []
    for key, value in evaluation.items():
        if key == "step":
            continue
        bits = QUANTIZED_PSNR.fullmatch(key)
        label = f"PSNR {bits[1]}-bit weights" if bits else EVALUATION_LABELS[key]
        if value is None:
            missing.append(label)
        else:
            shown.append(f"{label} {value:.2f} dB" if "PSNR" in label else f"{label} {value:.4f}")
    step = f" at step {evaluation['step']}" if evaluation["step"] is not None else ""
    absent = f" ({', '.join(missing)} not computed)" if missing else ""
    return (", ".join(shown) or "nothing computed") + step + absent


def _bitstream_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    size = f"{info['width']}x{info['height']}" if info["width"] and info["height"] else None
    return [
        ("kind", f"{info['format'] or 'unnamed format'} bitstream"),
        ("frames", info["frames"]),
        ("size", size),
        ("bits", f"{info['bits']} per weight"),
        ("tensors", info["tensors"]),
        ("weights", f"{info['weights']:,}"),
        ("bytes", f"{info['bytes']:,}"),
        ("bpp", f"{info['bpp']:.4g}" if info["bpp"] is not None else None),
    ]


def _params_row(info: dict[str, Any]) -> tuple[str, Any]:
    """Parameters from metrics.json, else (no metrics yet) the values the checkpoint's model state stores."""
    if info["stored_values"] is not None:
        return "stored values", f"{info['stored_values']:,} (the checkpoint's model tensors; no metrics yet)"
    return "parameters", f"{info['params']:,}" if info["params"] is not None else None


def _run_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    steps, data = info["steps"], info["data"]
    step_text = f"{'?' if steps['done'] is None else steps['done']} / {steps['planned'] or '?'}"
    if steps["done"] is None and not steps["planned"]:
        step_text = None
    elif steps["past_schedule"]:
        step_text += f" (steps past {steps['schedule_steps']} run at the schedule's final rate)"
    if info["builtin_data"]:
        data_text = "the task's built-in data"
    else:
        data_text = describe(data) if data else None
    checkpoints = info["checkpoints"]
    size = human_bytes(info["checkpoint_bytes"]) if info["checkpoint_bytes"] is not None else None
    rows: list[tuple[str, Any]] = [
        ("task", info["task"]),
        ("model", info["model"]),
        ("state", info["state"]),
        ("data", data_text),
        ("steps", step_text),
        ("evaluation", _evaluation_text(info["evaluation"]) if info["evaluation"] else None),
        _params_row(info),
        ("time spent", human_seconds(info["seconds"]) if info["seconds"] is not None else None),
        ("checkpoint", f"{checkpoints} checkpoints, {size} in all" if checkpoints > 1 else size),
        ("device", info["device"]),
    ]
    if info["resumed_from"] is not None:
        rows.append(("resumed", f"from step {info['resumed_from']}"))
    if info["images"]:
        rows.append(("images", f"{info['images']['finished']} finished, {info['images']['unfinished']} unfinished"))
    if info["bitstream"]:
        stream = info["bitstream"]
        bpp = f", {stream['bpp']:.4g} bpp" if stream["bpp"] is not None else ""
        rows.append(("bitstream", f"{BITSTREAM_NAME}: {stream['bytes']:,} bytes, {stream['bits']}-bit weights{bpp}"))
    return rows


def table(info: dict[str, Any]) -> str:
    """``info`` as aligned 'key  value' lines; 'not recorded' for what is missing."""
    rows = _bitstream_rows(info) if info["kind"] == "bitstream" else _run_rows(info)
    rows = [("path", info["path"]), *rows]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {NOT_RECORDED if value is None else value}" for key, value in rows)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("path", help="a run folder (a fit's --out) or a .camf bitstream")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    args = parser.parse_args(argv)
    info = facts(Path(args.path))
    print(json.dumps(info, indent=2) if args.json else table(info))
