"""Files written whole or not at all, readable as any new file is (camfields.io.atomic)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from test_codec import tensors

from camfields.codec.bitstream import read_bitstream, write_bitstream
from camfields.io.atomic import atomic_write
from camfields.training.checkpoint import save_checkpoint, write_json


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_mode_of_any_new_file(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "metrics.json", {"psnr": 30.0})
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1, "w": torch.ones(2)})
    write_bitstream(tmp_path / "video.camf", {"m": 1}, 8, tensors())
    (tmp_path / "plain.txt").write_text("x")  # what open() gives
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(
        ("metrics.json", "checkpoint.pt", "video.camf", "plain.txt"), expected
    )


def test_two_writers_to_one_path_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "video.camf"

    def first(f):
        f.write(b"first")
        atomic_write(target, lambda g: g.write(b"second"))  # a second writer while the first is open

    atomic_write(target, first)
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["video.camf"]


def test_a_bitstream_writer_ignores_a_stale_temporary_name(tmp_path):
    (tmp_path / "video.camf.tmp").mkdir()  # what a fixed temporary name would collide with
    write_bitstream(tmp_path / "video.camf", {"m": 1}, 8, tensors())
    assert read_bitstream(tmp_path / "video.camf").config == {"m": 1}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"psnr": 1.0})

    def broken(f):
        f.write(b"{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == '{\n  "psnr": 1.0\n}\n' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
