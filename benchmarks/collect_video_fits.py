#!/usr/bin/env python
"""Collect finished video fits, run separately, into one comparison table and JSON.

Reads each fit folder's ``config.json`` and ``metrics.json`` (as ``fit_video.py``,
``eval_rd.py`` and ``bench_video.py`` leave them). A fit's variant is its model, followed by
each setting in which the fit differs from that model's defaults: ``+nodes<N>`` (CAM grid
nodes), ``+norm_<name>`` (what CAM normalises), ``+qat<fraction>`` (the QAT phase) and
``+rate<weight>`` (a ``rate_weight``). With ``--reference VARIANT`` every fit of another
variant is also set against that variant's fits of the same seed: their PSNR at the same
parameter count (linear between the two nearest) and at the same bpp (linear in log-rate),
null outside their range. ``--metric`` picks the PSNR compared: of the decoded bitstream
(default), of the float weights (``psnr_float``) or with every weight rounded to its nearest
level. With ``--rd`` (an ``eval_rd.py`` rd.json) every fit also gets each baseline codec's
PSNR at its bpp. Prints the table and writes JSON with the devices the fits ran on.

    python benchmarks/collect_video_fits.py runs/plain-lr/ffnerv_14500 runs/rd-lowrate-damp/ffnerv_cam_14000_6bit_s0 \\
        --reference ffnerv --rd runs/rd-lowrate-damp/rd.json \\
        --out benchmarks/results/video/bigbuckbunny_320x180/lowrate_plain_vs_cam_6bit_dampening.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from camfields.cli import run
from camfields.codec.rd import psnr_at_rate
from camfields.errors import CamfieldsError
from camfields.tasks.video import resolve_config
from camfields.training.checkpoint import read_json, write_json

METRICS = ("psnr", "psnr_float", "psnr_nearest_rounding")
COLUMNS = ("params", "bytes", "bpp", "psnr", "psnr_float", "psnr_nearest_rounding", "ms_ssim", "seconds", "device")


def read_existing_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CamfieldsError(f"{path} does not exist: {what}")
    return read_json(path)


def variant_name(fit: dict[str, Any]) -> str:
    """The fit's model followed by a label for each setting in which it differs from the model's preset
    (the norm only where there is a CAM grid to follow it)."""
    preset = resolve_config(fit["model"])
    nodes, norm = fit["cam_grid_nodes"], fit["cam_norm"]
    name = fit["model"] + (f"+nodes{nodes}" if nodes != preset.generator.time_grid else "")
    name += f"+norm_{norm}" if nodes and norm != preset.generator.cam_norm else ""
    compression = preset.compression
    name += f"+qat{fit['qat_fraction']:g}" if fit["qat_fraction"] != compression.qat_fraction else ""
    return name + (f"+rate{fit['rate_weight']:g}" if fit["rate_weight"] != compression.rate_weight else "")


def read_fit(folder: Path) -> dict[str, Any]:
    """One finished fit: where it is, its model, seed and sizes, and its metrics."""
    config = read_existing_json(folder / "config.json", "pass the folder of a video fit")
    unfinished = "the fit has not finished (resume it with fit_video.py --resume)"
    metrics = read_existing_json(folder / "metrics.json", unfinished)
    # fits from before the [compression] block kept its settings at the top of the config
    compression = config.get("compression", config) if isinstance(config, dict) else config
    try:
        fit = {
            "fit": str(folder),
            "model": config["model"],
            "seed": config["train"]["seed"],
            "target_params": config["target_params"],
            "bits": compression["bits"],
            "cam_grid_nodes": config["generator"]["time_grid"],
            "cam_norm": config["generator"]["cam_norm"],
            "qat_fraction": compression["qat_fraction"],
            "qat_dampening": compression["qat_dampening"],
            "rate_weight": compression.get("rate_weight", 0.0),  # fits from before rate_weight existed had none
        }
        fit["variant"] = variant_name(fit)
        return fit | {key: metrics[key] for key in COLUMNS}
    except (KeyError, TypeError) as e:
        raise CamfieldsError(f"{folder} is not a video fit: its config.json or metrics.json lacks {e}") from None


def params_interpolation(points: list[dict[str, Any]], params: int, metric: str = "psnr") -> float | None:
    """``metric`` of ``points`` at ``params`` parameters, linear between the two nearest; None outside them."""
    xs, ys = zip(*sorted((p["params"], p[metric]) for p in points))
    if not xs[0] <= params <= xs[-1]:
        return None
    return float(np.interp(params, xs, ys))


def against_reference(fits: list[dict[str, Any]], reference: str, metric: str = "psnr") -> None:
    """Add to every fit of another variant the reference variant's ``metric`` (a PSNR; same seed) at its
    parameters and bpp, and the differences."""
    for fit in fits:
        if fit["variant"] == reference:
            continue
        same_seed = [f for f in fits if f["variant"] == reference and f["seed"] == fit["seed"]]
        if not same_seed:
            raise CamfieldsError(f"no {reference} fit with seed {fit['seed']} to compare {fit['fit']} with")
        by_rate = sorted(same_seed, key=lambda f: f["bpp"])
        at_params = params_interpolation(same_seed, fit["params"], metric)
        at_bpp = psnr_at_rate([f["bpp"] for f in by_rate], [f[metric] for f in by_rate], fit["bpp"])
        fit[f"{reference}_{metric}_at_same_params"] = at_params
        fit[f"{reference}_{metric}_at_same_bpp"] = at_bpp
        fit[f"{metric}_minus_{reference}_at_same_params"] = None if at_params is None else fit[metric] - at_params
        fit[f"{metric}_minus_{reference}_at_same_bpp"] = None if at_bpp is None else fit[metric] - at_bpp


def against_baselines(fits: list[dict[str, Any]], rd_path: Path) -> None:
    """Add to every fit the PSNR of each baseline codec of an rd.json at the fit's bpp."""
    rd = read_existing_json(rd_path, "pass the rd.json of an eval_rd.py run")
    baselines = [c for c in rd.get("codecs", []) if not c.get("name", "").startswith("camfields")]
    if not baselines:
        raise CamfieldsError(f"{rd_path} holds no baseline codec curves (x264, x265)")
    for fit in fits:
        fit["baseline_psnr_at_same_bpp"] = {
            c["name"]: psnr_at_rate(c["results"]["bpp"], c["results"]["psnr"], fit["bpp"]) for c in baselines
        }


def cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def print_table(fits: list[dict[str, Any]], reference: str | None, metric: str = "psnr") -> None:
    header = f"{'seed':>4} {'variant':<26}{'nodes':>6}{'damp':>6}{'params':>8}{'bytes':>8}"
    header += f"{'bpp':>8}{'PSNR':>7}{'float':>7}{'nearest':>8}"
    if reference:
        header += f"{'- ref @params':>14}{'- ref @bpp':>11}  ({metric})"
    print(header)
    for fit in fits:
        line = (
            f"{fit['seed']:>4} {fit['variant']:<26}{fit['cam_grid_nodes']:>6}{fit['qat_dampening']:>6g}"
            f"{fit['params']:>8}{fit['bytes']:>8}"
            f"{fit['bpp']:>8.4f}{fit['psnr']:>7.2f}{fit['psnr_float']:>7.2f}{fit['psnr_nearest_rounding']:>8.2f}"
        )
        if reference and fit["variant"] != reference:
            line += f"{cell(fit[f'{metric}_minus_{reference}_at_same_params']):>14}"
            line += f"{cell(fit[f'{metric}_minus_{reference}_at_same_bpp']):>11}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fits", nargs="+", help="folders of finished video fits")
    parser.add_argument("--reference", help="variant the others are compared with at the same seed (e.g. ffnerv)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="psnr",
        help="the PSNR compared with the reference: of the decoded bitstream (default), of the float weights, "
        "or with every weight rounded to its nearest level",
    )
    parser.add_argument("--rd", help="an eval_rd.py rd.json whose baseline codecs are read at each fit's bpp")
    parser.add_argument("--name", default="video_fits", help="name stored in the JSON")
    parser.add_argument("--description", default="", help="what the fits compare, stored in the JSON")
    parser.add_argument("--out", required=True, help="JSON results file")
    args = parser.parse_args(argv)

    fits = sorted((read_fit(Path(f)) for f in args.fits), key=lambda f: (f["seed"], f["variant"], f["params"]))
    if args.reference:
        if not any(f["variant"] == args.reference for f in fits):
            variants = ", ".join(sorted({f["variant"] for f in fits}))
            raise CamfieldsError(f"--reference {args.reference}: none of the fits is of that variant ({variants})")
        against_reference(fits, args.reference, args.metric)
    if args.rd:
        against_baselines(fits, Path(args.rd))
    print_table(fits, args.reference, args.metric)
    report = {
        "name": args.name,
        "description": args.description,
        "devices": sorted({f["device"] for f in fits}),
        "reference": args.reference,
        "metric": args.metric,
        "rd": args.rd,
        "results": fits,
    }
    write_json(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
