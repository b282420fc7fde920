"""Rebuild every frame of a camfields video bitstream (.camf) from the file alone: PNGs or an mp4.

With --tensors it prints where the file's bits go, tensor by tensor (entropy estimates).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from camfields.codec.bitstream import read_bitstream, tensor_bits
from camfields.codec.video import iter_frames, write_frames
from camfields.errors import CamfieldsError
from camfields.runtime import resolve_device


def print_tensor_bits(path: str) -> None:
    stream = read_bitstream(path)
    rows = tensor_bits(stream)
    print(f"{'tensor':<24}{'shape':>18}{'steps':>6}{'bits/weight':>12}{'alone':>7}{'bytes':>8}{'share':>7}")
    payload = sum(r["coded_bits"] for r in rows) or 1.0
    for r in rows:
        per_weight = [bits / max(r["weights"], 1) for bits in (r["coded_bits"], r["own_bits"])]
        shape = "x".join(map(str, r["shape"]))
        print(
            f"{r['name']:<24}{shape:>18}{r['steps']:>6}{per_weight[0]:>12.2f}{per_weight[1]:>7.2f}"
            f"{r['coded_bits'] / 8:>8.0f}{r['coded_bits'] / payload:>7.1%}"
        )
    print(
        f"payload estimate {payload / 8:.0f} B of the file's {stream.file_bytes} B "
        "(the rest: header, steps, models, coder overhead); 'alone' is each tensor under its own histogram"
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("bitstream", help="the .camf file written by fit_video.py or eval_rd.py")
    parser.add_argument("--out", help="output: a folder for PNG frames, or a file ending in .mp4")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of an mp4 output")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--tensors", action="store_true", help="print each tensor's share of the bits")
    args = parser.parse_args(argv)
    if not args.out and not args.tensors:
        parser.error("give --out (where the frames go), --tensors, or both")
    if args.fps < 1:
        raise CamfieldsError(f"--fps must be a frame rate of at least 1, got {args.fps}")
    out = Path(args.out) if args.out else None
    if out is not None and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        raise CamfieldsError(f"{out} already exists and is not empty; give a new file or folder for the frames")
    if args.tensors:
        print_tensor_bits(args.bitstream)
    if not args.out:
        return
    t0 = time.perf_counter()
    frames = iter_frames(Path(args.bitstream), resolve_device(args.device))
    count = write_frames(frames, out, args.fps)
    seconds = time.perf_counter() - t0
    header = read_bitstream(args.bitstream).config
    size = f"{header['width']}x{header['height']}"
    print(f"decoded {count} frames of {size} in {seconds:.2f} s (writing included) to {args.out}")
