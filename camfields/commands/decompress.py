"""Rebuild the image of a camfields image file (.camf, from `camfields compress`) as a PNG, from the file alone.

The PNG has the bit depth of the image that was fitted (8 or 16). A video file decodes with
`camfields decode`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camfields.codec.bitstream import read_bitstream
from camfields.codec.image import field_from_bitstream, render
from camfields.codec.video import BITSTREAM_FORMAT
from camfields.errors import CamfieldsError
from camfields.io.images import save_png


def decompress(path: Path, out: Path) -> tuple[int, int]:
    """Decode the image file ``path`` to the PNG ``out`` (which must not exist); returns (width, height)."""
    if out.exists():
        raise CamfieldsError(f"{out} already exists; give a new file for --out")
    if out.suffix.lower() != ".png":
        raise CamfieldsError(f"--out {out} must be a .png file")
    stream = read_bitstream(path)
    if isinstance(stream.config, dict) and stream.config.get("format") == BITSTREAM_FORMAT:
        raise CamfieldsError(
            f"{path} is a camfields video; rebuild its frames with `camfields decode {path} --out DIR`"
        )
    field = field_from_bitstream(stream, path)
    save_png(out, render(field.model, field.height, field.width), bits=field.png_bits)
    return field.width, field.height


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("file", help="a .camf image file written by camfields compress")
    parser.add_argument("--out", required=True, help="the PNG to write; it must not exist")
    args = parser.parse_args(argv)
    width, height = decompress(Path(args.file), Path(args.out))
    print(f"decoded {width}x{height} image to {args.out}")
