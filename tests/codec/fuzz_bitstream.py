"""Header forgeries of a tiny video bitstream, each decoded (first frames) or refused; run by
tests/codec/test_bitstream_bounds.py in a subprocess under a memory cap. Prints one JSON list of outcomes."""

from __future__ import annotations

import copy
import itertools
import json
import random
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import torch
from test_codec import framed

from camfields import CamfieldsError
from camfields.codec.header_dictionary import header_dictionary
from camfields.codec.video import encode, iter_frames
from camfields.modules.nerv import GeneratorConfig, build_generator

PREFIX = struct.Struct("<8sHI")
VALUES = [0, -1, 1, 2, 3, 5, 7, 64, 1 << 16, 1 << 20, 1 << 31, 1 << 62, "x", None, [], {}, 1.5, True, [2, 2], [[1, 1]]]


def tiny_bitstream(path: Path) -> None:
    torch.manual_seed(0)
    cfg = GeneratorConfig(strides=[2, 2], channels=8, stem_channels=4, stem_hidden=16, embedding_levels=4, time_grid=3)
    encode(path, build_generator(cfg, 16, 16), cfg, 6, frames=4)


def split(data: bytes) -> tuple[int, dict, bytes]:
    _, version, length = PREFIX.unpack_from(data)
    header = json.loads(
        zlib.decompressobj(zdict=header_dictionary(version)).decompress(data[PREFIX.size : PREFIX.size + length])
    )
    return version, header, data[PREFIX.size + length : -4]


def forge(version: int, header: dict, body: bytes) -> bytes:
    """A file holding ``header`` (compressed with the format's dictionary) and ``body``, with a valid checksum."""
    packer = zlib.compressobj(9, zdict=header_dictionary(version))
    return framed(version, packer.compress(json.dumps(header).encode()) + packer.flush(), body)


def places(header: dict) -> list[tuple]:
    """Paths to the values a forgery may replace: sizes, counts, shapes and config values."""
    out = [("config", key) for key in header["config"] if key != "format"]
    out += [("config", "generator", key) for key in header["config"]["generator"]]
    out += [("bits",), ("words",)]
    for i, entry in enumerate(header["tensors"]):
        out += [("tensors", i, "steps"), ("tensors", i, "shape")]
        out += [("tensors", i, "shape", j) for j in range(len(entry["shape"]))]
    return out


def main(seed: int, count: int) -> None:
    folder = Path(tempfile.mkdtemp())
    tiny_bitstream(folder / "real.camf")
    version, header, body = split((folder / "real.camf").read_bytes())
    rng, outcomes = random.Random(seed), []
    spots = places(header)
    for index in range(count):
        forged = copy.deepcopy(header)
        where = rng.choice(spots)
        target = forged
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = rng.choice(VALUES)
        path = folder / f"f{index}.camf"
        path.write_bytes(forge(version, forged, body))
        try:
            frames = list(itertools.islice(iter_frames(path), 3))
            outcome = {"kind": "decoded", "frames": len(frames)}
        except CamfieldsError as e:
            outcome = {"kind": "refused", "message": str(e)}
        except Exception as e:  # what the test forbids
            outcome = {"kind": "traceback", "message": f"{type(e).__name__}: {e}"}
        outcomes.append({"where": list(map(str, where)), "value": repr(target[where[-1]]), **outcome})
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
