"""A small file cannot ask for anything: forged video headers (with a valid checksum), bit flips and
truncations end in one sentence or decode within bounds, never in a traceback or past a memory cap."""

from __future__ import annotations

import itertools
import json
import random
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_bitstream import forge, split, tiny_bitstream

from camfields import CamfieldsError
from camfields.codec.bitstream import read_bitstream
from camfields.codec.video import decode_frames, iter_frames

#: address space of the fuzz process: importing torch maps about 3.2 GB; decoding a forged file may add 3 GB
MEMORY_CAP = 6 << 30


@pytest.fixture
def real(tmp_path):
    path = tmp_path / "real.camf"
    tiny_bitstream(path)
    return path


def forged(real: Path, tmp_path: Path, **changes) -> Path:
    version, header, body = split(real.read_bytes())
    for where, value in changes.items():
        target = header["config"]
        *parents, last = where.split("__")
        for key in parents:
            target = target[key]
        if value is DROP:
            del target[last]
        else:
            target[last] = value
    path = tmp_path / "forged.camf"
    path.write_bytes(forge(version, header, body))
    return path


DROP = object()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"generator__stem_hidden": 1 << 40}, "stem_hidden must be from 1 to 65536"),
        ({"generator__channels": 1 << 31}, "channels must be from 1 to 65536"),
        ({"generator__time_grid": 1 << 30}, "time_grid must be from 0"),
        ({"generator__strides": [2] * 40}, "strides must be 1 to 16 factors"),
        ({"generator__frame_grids": [[1 << 20, 4]]}, "frame_grids must be"),
        ({"generator__channels": 64}, "tensor convs.0.weight has shape"),  # a config that is not the weights'
        ({"generator__cam_norm": "batch"}, "cam_norm must be one of"),
        ({"generator__unknown": 1}, "unknown config key 'unknown'"),
        ({"generator": [1, 2]}, "generator must be a table"),
        ({"generator": DROP}, "the video header lacks generator"),
        ({"frames": DROP}, "the video header lacks frames"),
        ({"frames": "many"}, "frame count and size must be from 1 to 65536"),
        ({"frames": 1 << 20}, "frame count and size must be from 1 to 65536"),
        ({"width": 1 << 15, "height": 1 << 15}, "exceed the decoder's 16,777,216 pixels"),
        ({"format": "camfields-image/1"}, "not a camfields video"),
    ],
)
def test_forged_headers_are_one_sentence_before_any_allocation(real, tmp_path, changes, message):
    path = forged(real, tmp_path, **changes)
    with pytest.raises(CamfieldsError, match=message) as error:
        next(iter_frames(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_header_that_is_not_a_table_is_one_sentence(real, tmp_path):
    version, header, body = split(real.read_bytes())
    path = tmp_path / "list.camf"
    path.write_bytes(forge(version, {**header, "config": [1, 2]}, body))
    with pytest.raises(CamfieldsError, match="holds 'list', not a camfields video"):
        decode_frames(path)


def test_a_forged_frame_count_streams_instead_of_holding_every_frame(real, tmp_path):
    path = forged(real, tmp_path, frames=65536)
    first = list(itertools.islice(iter_frames(path), 5))  # the decoder renders frames as they are taken
    assert len(first) == 5 and first[0].shape == (16, 16, 3)


def test_seeded_bit_flips_and_truncations_are_each_reported(real):
    data, rng = real.read_bytes(), random.Random(3)
    damaged = [data[:k] for k in sorted(rng.sample(range(len(data)), 30))]
    for _ in range(100):
        bit = rng.randrange(8 * len(data))
        damaged.append(data[: bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1 :])
    for index, bad in enumerate(damaged):
        real.write_bytes(bad)
        with pytest.raises(CamfieldsError, match="not a valid camfields bitstream") as error:
            read_bitstream(real)
        assert "\n" not in str(error.value), index


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def test_random_header_forgeries_decode_or_end_in_one_sentence_under_a_memory_cap():
    fuzzer = Path(__file__).with_name("fuzz_bitstream.py")
    done = subprocess.run(
        [sys.executable, str(fuzzer), "7", "150"], capture_output=True, text=True, timeout=300, preexec_fn=_cap_memory
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout)
    tracebacks = [o for o in outcomes if o["kind"] == "traceback"]
    assert not tracebacks, tracebacks[:3]
    kinds = {o["kind"] for o in outcomes}
    assert kinds == {"decoded", "refused"}, kinds  # some forgeries are harmless, most are refused
    assert all("\n" not in o["message"] for o in outcomes if o["kind"] == "refused")
