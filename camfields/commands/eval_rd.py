"""Rate-distortion evaluation of the video codec against x264 and x265 on one clip
(``--task video``, the default), or of the image codec against JPEG, WebP, AVIF and JPEG 2000
on an image or a folder of images (``--task image``: see ``commands.eval_rd_image``).

Video: for every model (nerv, cam, ffnerv, ffnerv_cam), seed, target size and bit depth: fit,
encode, decode and measure PSNR (8-bit frames) and MS-SSIM against the source and bpp from the
bitstream's bytes. x264 and x265 (ffmpeg, yuv420p, the given preset) run over a CRF range on
the same frames. With --time-budget SECONDS every fit gets the same epochs, the most that a
timing probe of each fit on the device says end within the budget (--fit-cost replaces the
probe by given costs).

Image: for every model (cam, ffn, ngp), target size and bit depth: fit every image once per
model and size, write it with post-training n-bit weights to a .camf file and decode it from
the file alone; PSNR and MS-SSIM of the decoded 8-bit image, bpp from the file's bytes; the
classic codecs over their quality sweeps on the same images; curves averaged over the images.

Both write CompressAI-style JSON per codec, BD-rate / BD-PSNR of each camfields curve against
each baseline (image: and each model against every later one in --models, at equal bits), and
an RD plot (PSNR vs bpp) into --out. Rerun with the same --out, finished fits are re-encoded and
unfinished ones resumed; a fit made with other settings there is an error.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from camfields.cli import comma_ints, comma_names
from camfields.codec import baselines
from camfields.codec.rd_report import bd_table, curve, plot, print_summary, same_rate_table
from camfields.commands import eval_rd_image
from camfields.config import deep_merge
from camfields.errors import CamfieldsError
from camfields.runtime import device_name, resolve_device
from camfields.tasks.video import PRESETS, VideoConfig, fit_video, load_clip, quality, resolve_config
from camfields.tasks.video.budget import FitCost, plan_epochs, probe_fit
from camfields.training.checkpoint import write_json
from camfields.training.progress import announce, phase


@dataclass(frozen=True)
class Fit:
    """One camfields point of the sweep."""

    model: str
    seed: int | None  # None: the config's seed
    params: int
    bits: int

    @property
    def folder(self) -> str:
        return f"{self.model}_{self.params}_{self.bits}bit" + ("" if self.seed is None else f"_seed{self.seed}")

    def config(self, config: str, overrides: dict) -> VideoConfig:
        seed = {} if self.seed is None else {"train": {"seed": self.seed}}
        return resolve_config(
            self.model,
            config,
            deep_merge(overrides, {**seed, "target_params": self.params, "compression": {"bits": self.bits}}),
        )


def parse_fit_cost(text: str, time_budget: float | None) -> FitCost:
    """``--fit-cost EPOCH_SECONDS,ONCE_SECONDS`` as a FitCost, or one clear error."""
    try:
        epoch_seconds, once_seconds = (float(part) for part in text.split(","))
    except ValueError:
        epoch_seconds = once_seconds = float("nan")
    if time_budget is None or not (0 < epoch_seconds < float("inf") and 0 <= once_seconds < float("inf")):
        raise CamfieldsError(
            f"--fit-cost takes two numbers, seconds per epoch (> 0) and seconds once (>= 0), with --time-budget; "
            f"got {text!r}"
        )
    return FitCost(epoch_seconds, once_seconds)


def budget_plan(
    out: Path,
    cfgs: list[VideoConfig],
    video: torch.Tensor,
    device: torch.device,
    seconds: float,
    started: float,
    load_seconds: float,
    assumed_cost: FitCost | None = None,
) -> dict:
    """The epochs every fit gets within ``seconds`` counted from ``started`` (``time.perf_counter``),
    from a timing probe of each fit, or ``assumed_cost`` for every fit when given; kept in
    ``out/plan.json`` so that a rerun with the same budget resumes its fits with the same epochs."""
    path = out / "plan.json"
    if path.exists():
        try:
            plan = json.loads(path.read_text())
            planned = [(f["model"], f["params"], f["bits"]) for f in plan["fits"]]
            planned_seconds = plan["time_budget_seconds"]
        except (ValueError, KeyError, TypeError) as e:
            raise CamfieldsError(f"{path} is not a time-budget plan ({e}); delete it to plan again") from None
        if planned_seconds == seconds and planned == [(c.model, c.target_params, c.compression.bits) for c in cfgs]:
            print(f"time budget: {plan['epochs']} epochs per fit, the plan in {path}", flush=True)
            return plan
    costs = [assumed_cost or probe_fit(video, cfg, device, load_seconds=load_seconds) for cfg in cfgs]
    remaining = seconds - (time.perf_counter() - started)
    epochs = plan_epochs(costs, remaining)
    plan = {
        "time_budget_seconds": seconds,
        "seconds_left_for_fits": remaining,
        "epochs": epochs,
        "device": device_name(device),
        "fits": [
            {
                "model": c.model,
                "params": c.target_params,
                "bits": c.compression.bits,
                "seconds_per_epoch": cost.epoch_seconds,
                "seconds_once": cost.fixed_seconds,
            }
            for c, cost in zip(cfgs, costs)
        ],
    }
    write_json(path, plan)
    print(f"time budget: {epochs} epochs per fit ({remaining:.0f} s left for {len(cfgs)} fits)", flush=True)
    return plan


def run_baselines(
    video: torch.Tensor, codecs: list[str], crfs: str, preset: str, progress: bool = True
) -> tuple[list[dict], list[str]]:
    """One curve per codec over the CRFs of ``crfs`` on ``video`` (T, H, W, 3), and notes of the
    codecs ffmpeg lacks; with ``progress`` a bar per codec counts its CRFs."""
    curves, notes = [], []
    frames, height, width, _ = video.shape
    for codec in codecs:
        if not baselines.available(codec):
            notes.append(f"{codec} is unavailable in the bundled ffmpeg")
            continue
        points = []
        crf_values = comma_ints(crfs)
        label = f"{codec} {preset}, {len(crf_values)} CRFs" if progress else None
        for crf in phase(crf_values, len(crf_values), label):
            coded = baselines.code_clip(video, codec, crf, preset)
            points.append(
                {
                    "crf": crf,
                    "bpp": 8 * coded.bytes / (frames * height * width),
                    **quality(coded.frames, video),
                    "encode_fps": frames / coded.seconds_encode,
                    "decode_fps": frames / coded.seconds_decode,
                }
            )
        curves.append(curve(codec, f"{codec} via ffmpeg, preset {preset}, yuv420p, CRF {crfs}", points))
    return curves, notes


#: the defaults of the options both tasks take, by task (the image task's: ``eval_rd_image.DEFAULTS``)
VIDEO_DEFAULTS = {
    "config": "video/bunny_cpu",
    "models": "nerv,cam",
    "params": "100000,200000,400000",
    "bits": "8",
    "codecs": "x264,x265",
    "crf": "51,46,41,36,31",
    "preset": "veryslow",
}
#: options only one task takes
VIDEO_ONLY = ("video", "epochs", "time_budget", "fit_cost", "seeds", "crf", "preset")
IMAGE_ONLY = ("images", "steps", "qat", "rate_weights")


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=("video", "image"), default="video", help="what to evaluate (default video)")
    parser.add_argument("--video", help="video: video file or folder of frames")
    parser.add_argument("--images", help="image: an image file or a folder of images (RGB)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or phase lines")
    parser.add_argument(
        "--config", help="preset or TOML file of the fits (default video/bunny_cpu; image: image/kodak_rd_cpu)"
    )
    parser.add_argument(
        "--models",
        help="camfields models: nerv, cam, ffnerv, ffnerv_cam (default nerv,cam); image: cam, ffn, ngp "
        "(default cam,ffn)",
    )
    parser.add_argument(
        "--params",
        help="comma-separated target parameter counts (default 100000,200000,400000; image: 3000,6000,12000,24000, "
        "each fitted with the largest hidden width whose field has at most that many parameters)",
    )
    parser.add_argument("--bits", help="comma-separated weight bit depths (default 8; image: 6,8)")
    parser.add_argument(
        "--rate-weights",
        help="image, instead of --params: comma-separated weights of the rate term, one fit each at the model's own "
        "size with quantization-aware training (for models whose size the image sets: pyramid, pyramid_cam)",
    )
    parser.add_argument("--epochs", type=int, help="video: override the config's epochs")
    parser.add_argument("--steps", type=int, help="image: override the config's training steps")
    parser.add_argument(
        "--qat",
        type=float,
        metavar="FRACTION",
        help="image: fit each bit depth on its own, the last FRACTION of the steps through its quantizer "
        "(quantization-aware training); default: one fit per size, quantized after training",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="video, instead of --epochs: give every fit the same epochs, the most that let the whole run (baseline "
        "codecs, a timing probe of each fit, the fits) end within SECONDS on this device",
    )
    parser.add_argument(
        "--fit-cost",
        metavar="EPOCH_SECONDS,ONCE_SECONDS",
        help="with --time-budget: plan with these costs of every fit (seconds per epoch, seconds once after "
        "training) instead of timing each fit on this device (to plan for another machine's measured speed)",
    )
    parser.add_argument(
        "--seeds", help="video: comma-separated seeds: one curve per model and seed (default: one, the config's seed)"
    )
    parser.add_argument("--crf", help="video: comma-separated CRFs of x264 / x265 (default 51,46,41,36,31)")
    parser.add_argument("--preset", help="video: x264 / x265 preset (default veryslow)")
    parser.add_argument(
        "--codecs",
        help="baselines to run, '' for none (those unavailable are reported); default x264,x265; image: "
        "jpeg,webp,avif,jpeg2000",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="output folder (fits, rd.json, rd.png)")
    args = parser.parse_args(argv)
    image = args.task == "image"
    stray = [name for name in (VIDEO_ONLY if image else IMAGE_ONLY) if getattr(args, name) is not None]
    if stray:
        raise CamfieldsError(f"--task {args.task} takes no --{stray[0].replace('_', '-')}")
    if args.rate_weights is not None and args.params is not None:
        raise CamfieldsError("--rate-weights replaces --params as the sweep's size axis: give one of them")
    needed = "images" if image else "video"
    if getattr(args, needed) is None:
        raise CamfieldsError(f"--task {args.task} needs --{needed}")
    for name, value in (eval_rd_image.DEFAULTS if image else VIDEO_DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if image:
        eval_rd_image.run(args)
    else:
        run_video(args)


def run_video(args: argparse.Namespace) -> None:
    """``camfields eval-rd --task video`` with the parsed options (see the module's docstring)."""
    started = time.perf_counter()
    models = comma_names(args.models, PRESETS, "--models")
    sizes, depths = comma_ints(args.params), comma_ints(args.bits)
    if not models or not sizes or not depths:
        raise CamfieldsError("--models, --params and --bits each need at least one value")
    if args.time_budget is not None and (args.epochs or not args.time_budget > 0):
        raise CamfieldsError("--time-budget takes a number of seconds > 0, and replaces --epochs: give one of them")
    assumed_cost = parse_fit_cost(args.fit_cost, args.time_budget) if args.fit_cost is not None else None
    codecs = comma_names(args.codecs, baselines.CODECS, "--codecs")
    out = Path(args.out)
    device = resolve_device(args.device)
    seeds: list[int | None] = comma_ints(args.seeds) if args.seeds else [None]
    # size-major: a run cut short still holds every model at its first sizes
    fits = [Fit(model, seed, params, bits) for params in sizes for bits in depths for model in models for seed in seeds]
    overrides = {"epochs": args.epochs} if args.epochs else {}
    reference_cfg = fits[0].config(args.config, overrides)

    t0 = time.perf_counter()
    video = load_clip(Path(args.video), reference_cfg)
    load_seconds = time.perf_counter() - t0
    baseline_curves, notes = run_baselines(video, codecs, args.crf, args.preset, not args.quiet)

    plan = None
    if args.time_budget is not None:
        cfgs = [fit.config(args.config, overrides) for fit in fits]
        plan = budget_plan(out, cfgs, video, device, args.time_budget, started, load_seconds, assumed_cost)
        overrides = {"epochs": plan["epochs"]}
    clip_shape = tuple(video.shape[:3])
    del video  # the fits load the clip themselves
    points: dict[tuple[str, int | None], list[dict]] = {(model, seed): [] for model in models for seed in seeds}
    for fit in fits:
        cfg = fit.config(args.config, overrides)
        if not args.quiet:
            announce(
                f"fit {fit.model}: {fit.params} params, {fit.bits} bits, seed {cfg.train.seed}, {cfg.epochs} epochs"
            )
        # resuming checks the folder's config: a finished point is re-encoded, a stale one refused
        metrics = fit_video(
            args.video, cfg, out / fit.folder, str(device), resume=True, progress=not args.quiet, extend=False
        )
        kept = ("bpp", "psnr", "ms_ssim", "params", "bits", "decode_fps", "psnr_float", "psnr_nearest_rounding")
        points[fit.model, fit.seed].append({k: metrics[k] for k in kept})
    curves = []
    for (model, seed), model_points in points.items():
        tag = "" if seed is None else f"-seed{seed}"
        seed_used = reference_cfg.train.seed if seed is None else seed
        description = f"camfields {model}, {args.params} parameters, {args.bits} bits, seed {seed_used}"
        curves.append(curve(f"camfields-{model}{tag}", description, model_points))
    curves += baseline_curves

    camfields_names = [c["name"] for c in curves if c["name"].startswith("camfields-")]
    pairs = [(ours, ref) for ours in camfields_names for ref in (c["name"] for c in curves) if ref != ours]
    bd = bd_table(curves, pairs)
    same_rate = same_rate_table(curves, camfields_names, "params")
    frames, height, width = clip_shape
    report = {
        "video": args.video,
        "frames": frames,
        "width": width,
        "height": height,
        "device": device_name(device),
        "notes": notes,
        "time_budget": plan,
        "bd": bd,
        "same_rate": same_rate,
        "codecs": curves,
    }
    write_json(out / "rd.json", report)
    plot(curves, out / "rd.png", f"{Path(args.video).stem} {width}x{height}, {frames} frames")
    print_summary(curves, same_rate, "params", bd, notes)
    print(f"wrote {out / 'rd.json'} and {out / 'rd.png'}")
