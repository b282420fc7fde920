"""Bitstream round trip and damage detection, entropy coding, and BD-rate on known curves."""

from __future__ import annotations

import numpy as np
import pytest

from camfields import CamfieldsError
from camfields.codec import entropy
from camfields.codec.bitstream import QuantizedTensor, read_bitstream, write_bitstream
from camfields.codec.rd import bd_psnr, bd_rate


def tensors(seed: int = 0) -> list[QuantizedTensor]:
    rng = np.random.default_rng(seed)
    return [
        QuantizedTensor("conv.weight", (4, 3, 3, 3), 0.013, rng.integers(-127, 128, 108)),
        QuantizedTensor("grid", (5, 32), 0.5, np.round(rng.normal(0, 4, 160)).astype(np.int64)),
        QuantizedTensor("empty", (0,), 1.0, np.zeros(0, dtype=np.int64)),
    ]


def test_bitstream_round_trip_is_exact(tmp_path):
    path = tmp_path / "v.camf"
    config = {"model": "cam", "size": [64, 32], "nested": {"a": [1, 2.5]}}
    size = write_bitstream(path, config, 8, tensors())
    stream = read_bitstream(path)
    assert size == path.stat().st_size == stream.file_bytes
    assert stream.config == config and stream.bits == 8
    for original, decoded in zip(tensors(), stream.tensors):
        assert decoded.name == original.name and decoded.shape == original.shape and decoded.step == original.step
        assert np.array_equal(decoded.values, original.values)
        assert np.array_equal(decoded.dequantize(), original.dequantize())
    # the estimate is labelled as such and lies near the coded payload
    payload_bits = 8 * (size - 8 - 2 - 4 - 4)
    assert 0 < stream.estimated_payload_bits < payload_bits


def test_entropy_coding_beats_fixed_length_on_peaked_symbols():
    rng = np.random.default_rng(1)
    symbols = np.round(rng.normal(0, 2, 20000)).astype(np.int64)
    low, counts = entropy.histogram(symbols)
    words = entropy.encode(symbols, low, counts)
    assert np.array_equal(entropy.decode(words, len(symbols), low, counts), symbols)
    bits = 32 * len(words)
    assert bits < 0.5 * 8 * len(symbols)  # far below 8 bits per symbol
    assert abs(bits - entropy.estimated_bits(counts)) / bits < 0.02  # and near the Shannon bound


def test_truncated_or_corrupted_files_are_reported(tmp_path):
    path = tmp_path / "v.camf"
    write_bitstream(path, {"m": 1}, 8, tensors())
    data = path.read_bytes()
    cases = {
        "short": data[:10],
        "truncated": data[:-7],
        "flipped": data[:40] + bytes([data[40] ^ 0x10]) + data[41:],
        "magic": b"NOTCAMF!" + data[8:],
        "empty": b"",
    }
    for name, damaged in cases.items():
        bad = tmp_path / f"{name}.camf"
        bad.write_bytes(damaged)
        with pytest.raises(CamfieldsError, match="not a valid camfields bitstream"):
            read_bitstream(bad)
    with pytest.raises(CamfieldsError, match="cannot read bitstream"):
        read_bitstream(tmp_path / "missing.camf")


def test_hostile_lengths_are_rejected_before_allocation(tmp_path):
    import json
    import struct
    import zlib

    def forge(header: dict) -> bytes:
        packed = zlib.compress(json.dumps(header).encode())
        body = struct.pack("<8sHI", b"CAMFCODE", 1, len(packed)) + packed
        return body + struct.pack("<I", zlib.crc32(body))

    base = {"config": {}, "bits": 8, "low": 0, "counts": [1], "words": 0}
    huge = {**base, "tensors": [{"name": "w", "shape": [1 << 20, 1 << 20], "step": 1.0}]}
    lying = {**base, "tensors": [{"name": "w", "shape": [5], "step": 1.0}]}
    for header, message in ((huge, "more than"), (lying, "histogram counts 1 symbols")):
        path = tmp_path / "forged.camf"
        path.write_bytes(forge(header))
        with pytest.raises(CamfieldsError, match=message):
            read_bitstream(path)


def test_bd_rate_and_bd_psnr_of_known_curves():
    rates, psnrs = [0.01, 0.02, 0.05, 0.1], [30.0, 33.0, 36.5, 38.0]
    # the same quality at 80 % of the rate: -20 %; the same rate at +1 dB: +1 dB
    assert bd_rate(rates, psnrs, [0.8 * r for r in rates], psnrs) == pytest.approx(-20.0, abs=1e-6)
    assert bd_psnr(rates, psnrs, rates, [p + 1 for p in psnrs]) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(rates, psnrs, [1.5 * r for r in rates], psnrs) == pytest.approx(50.0, abs=1e-6)
    with pytest.raises(CamfieldsError, match="do not overlap"):
        bd_rate(rates, psnrs, rates, [p + 20 for p in psnrs])
    # three points: the quadratic through them, exact for a curve that is one
    assert bd_rate(rates[:3], psnrs[:3], [0.8 * r for r in rates[:3]], psnrs[:3]) == pytest.approx(-20.0, abs=1e-6)
    with pytest.raises(CamfieldsError, match="at least 3"):
        bd_rate(rates[:2], psnrs[:2], rates, psnrs)
