#!/usr/bin/env python
"""Rebuild every frame of a camfields video bitstream (.camf) from the file alone: PNGs or an mp4."""

from __future__ import annotations

import argparse
import sys
import time

from camfields.cli import run
from camfields.runtime import resolve_device
from camfields.tasks.video import decode_frames, write_frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bitstream", help="the .camf file written by fit_video.py or eval_rd.py")
    parser.add_argument("--out", required=True, help="output: a folder for PNG frames, or a file ending in .mp4")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of an mp4 output")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    frames = decode_frames(args.bitstream, resolve_device(args.device)).cpu()
    seconds = time.perf_counter() - t0
    write_frames(frames, args.out, args.fps)
    print(f"decoded {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} in {seconds:.2f} s to {args.out}")


if __name__ == "__main__":
    sys.exit(run(main))
