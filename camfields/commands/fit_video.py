"""Fit a video with a NeRV-style generator (nerv; cam with a temporal CAM grid; ffnerv and
ffnerv_cam with FFNeRV's multi-resolution temporal grids as the embedding), quantize it to n-bit
weights and write the bitstream; see README.md."""

from __future__ import annotations

import argparse

from camfields.cli import add_common_arguments, report, train_overrides
from camfields.errors import CamfieldsError
from camfields.tasks.video import PRESETS, QUANT_STEPS, fit_video, resolve_config


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``"320x180"`` -> (320, 180); anything else is an error naming ``flag``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CamfieldsError(f"{flag} must look like 320x180, got {text!r}") from None
    if min(width, height) < 1:
        raise CamfieldsError(f"{flag} must be positive, got {text!r}")
    return width, height


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--video", required=True, help="video file (mp4 or anything ffmpeg reads) or folder of frames")
    parser.add_argument("--model", choices=sorted(PRESETS), help="generator preset (default: cam)")
    parser.add_argument("--epochs", type=int, help="passes over all frames")
    parser.add_argument("--size", help="resize frames to WxH, e.g. 320x180 (after the crop)")
    parser.add_argument("--crop", help="centred crop WxH of the source frames, taken before resizing")
    parser.add_argument("--start", type=int, help="index of the first frame used (default: 0)")
    parser.add_argument("--stride", type=int, help="use every N-th frame (default: 1)")
    parser.add_argument("--frames", type=int, help="number of frames to use (default: all)")
    parser.add_argument("--params", type=int, help="target parameter count (sizes the generator)")
    parser.add_argument("--bits", type=int, help="weight bit depth of the bitstream")
    parser.add_argument(
        "--quant-steps", choices=QUANT_STEPS, help="one quantization step per tensor or per output channel"
    )
    add_common_arguments(parser, "video/bunny_cpu", steps=False)
    args = parser.parse_args(argv)
    top = {
        "epochs": args.epochs,
        "start": args.start,
        "stride": args.stride,
        "frames": args.frames,
        "target_params": args.params,
    }
    compression = {"bits": args.bits, "quant_steps": args.quant_steps}
    if args.size:
        top["width"], top["height"] = parse_size(args.size, "--size")
    if args.crop:
        top["crop_width"], top["crop_height"] = parse_size(args.crop, "--crop")
    overrides = {k: v for k, v in top.items() if v is not None}
    if any(v is not None for v in compression.values()):
        overrides["compression"] = {k: v for k, v in compression.items() if v is not None}
    cfg = resolve_config(args.model, args.config, {**overrides, "train": train_overrides(args)})
    metrics = fit_video(args.video, cfg, args.out, args.device, args.resume, progress=not args.quiet)
    report({k: metrics[k] for k in ("psnr", "ms_ssim", "bpp", "params", "seconds", "decode_fps")})
