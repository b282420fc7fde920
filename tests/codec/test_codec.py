"""Bitstream round trip and damage detection, entropy coding, and BD-rate on known curves."""

from __future__ import annotations

import numpy as np
import pytest

from camfields import CamfieldsError
from camfields.codec import entropy
from camfields.codec.bitstream import QuantizedTensor, read_bitstream, write_bitstream
from camfields.codec.rd import bd_psnr, bd_rate, psnr_at_rate


def bfloat16(*values: float) -> np.ndarray:
    """float32 steps that are bfloat16 numbers (what the quantizer produces)."""
    return (np.asarray(values, dtype=np.float32).view(np.uint32) >> 16 << 16).view(np.float32)


def tensors(seed: int = 0) -> list[QuantizedTensor]:
    rng = np.random.default_rng(seed)
    return [
        QuantizedTensor("conv.weight", (4, 3, 3, 3), bfloat16(0.013, 0.5, 2e-4, 3.0), rng.integers(-127, 128, 108)),
        QuantizedTensor("grid", (5, 32), bfloat16(0.5), np.round(rng.normal(0, 4, 160)).astype(np.int64)),
        QuantizedTensor("empty", (0,), bfloat16(1.0), np.zeros(0, dtype=np.int64)),
    ]


def framed(version: int, packed_header: bytes, rest: bytes = b"") -> bytes:
    """A bitstream file around a compressed header and the bytes after it: prefix, then the CRC-32."""
    import struct
    import zlib

    body = struct.pack("<8sHI", b"CAMFCODE", version, len(packed_header)) + packed_header + rest
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("version", [3, 4])
def test_bitstream_round_trip_is_exact(tmp_path, version):
    path = tmp_path / "v.camf"
    config = {"model": "cam", "size": [64, 32], "nested": {"a": [1, 2.5]}}
    size = write_bitstream(path, config, 8, tensors(), version)
    stream = read_bitstream(path)
    assert size == path.stat().st_size == stream.file_bytes
    assert stream.config == config and stream.bits == 8
    for original, decoded in zip(tensors(), stream.tensors):
        assert decoded.name == original.name and decoded.shape == original.shape
        assert np.array_equal(decoded.steps, original.steps)
        assert np.array_equal(decoded.values, original.values)
        assert np.array_equal(decoded.dequantize(), original.dequantize())
    # one step per output channel: slice i of the weights is its integers times step i
    conv = stream.tensors[0]
    for i, step in enumerate(conv.steps):
        assert np.array_equal(
            conv.dequantize()[i], (conv.values.reshape(4, 27)[i] * step).astype(np.float32).reshape(3, 3, 3)
        )
    # the estimate is labelled as such and lies near the coded payload
    payload_bits = 8 * (size - 8 - 2 - 4 - 4)
    assert 0 < stream.estimated_payload_bits < payload_bits


def test_entropy_coding_beats_fixed_length_on_peaked_symbols():
    rng = np.random.default_rng(1)
    symbols = np.round(rng.normal(0, 2, 20000)).astype(np.int64)
    low, counts = entropy.histogram(symbols)
    words = entropy.encode([(symbols, low, counts)])
    assert np.array_equal(entropy.decode(words, [(len(symbols), low, counts)])[0], symbols)
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

    def forge(header: dict, steps: bytes = b"", version: int = 3) -> bytes:
        return framed(version, zlib.compress(json.dumps(header).encode()), steps)

    base = {"config": {}, "bits": 8, "low": 0, "counts": [1], "words": 0}
    huge = {**base, "tensors": [{"name": "w", "shape": [1 << 20, 1 << 20], "steps": 1}]}
    lying = {**base, "tensors": [{"name": "w", "shape": [5], "steps": 1}]}
    many_steps = {**base, "tensors": [{"name": "w", "shape": [1, 1], "steps": 1 << 20}]}
    one = {**base, "tensors": [{"name": "w", "shape": [1], "steps": 1}]}
    negative, positive = struct.pack("<H", 0xBF80), struct.pack("<H", 0x3F80)  # bfloat16 -1.0 and 1.0
    no_histogram = {k: v for k, v in one.items() if k not in ("low", "counts")}
    cases = [
        (huge, b"", "more than", 3),
        (lying, b"", "histogram counts 1 symbols", 3),
        (many_steps, b"", "malformed", 3),
        (one, b"", "the header says 2", 3),
        (one, negative, "not a positive finite number", 3),
        (one, positive + b"\0" * 40, "the header says 2", 3),
        (no_histogram, positive, "lacks required fields", 3),  # formats 2 and 3 need the histogram
        (no_histogram, positive, "the header says 6", 4),  # format 4 needs a model (4 bytes) per tensor
        ({**no_histogram, "words": -1}, positive, "not a count", 4),
        ({**huge, "tensors": huge["tensors"]}, b"", "more than", 4),
        # past the allowance of a small file (1 << 22 weights), far below the absolute limit
        ({**no_histogram, "tensors": [{"name": "w", "shape": [1 << 23], "steps": 1}]}, b"", "more than 4194304", 4),
    ]
    for header, steps, message, version in cases:
        path = tmp_path / "forged.camf"
        path.write_bytes(forge(header, steps, version))
        with pytest.raises(CamfieldsError, match=message):
            read_bitstream(path)


def test_writer_refuses_steps_it_cannot_store_exactly(tmp_path):
    values = np.zeros(6, dtype=np.int64)
    cases = [
        (QuantizedTensor("w", (2, 3), np.array([0.013], dtype=np.float32), values), "not positive bfloat16"),
        (QuantizedTensor("w", (2, 3), bfloat16(1.0, 0.0), values), "not positive bfloat16"),
        (QuantizedTensor("w", (2, 3), bfloat16(1.0, 2.0, 4.0), values), "has 3 steps"),
        (QuantizedTensor("b", (6,), bfloat16(*[1.0] * 6), values), "has 6 steps"),
    ]
    for tensor, message in cases:
        with pytest.raises(CamfieldsError, match=message):
            write_bitstream(tmp_path / "w.camf", {}, 8, [tensor])
    # formats 4 and 5 model each tensor over the bit depth's range, so an integer beyond it is refused
    wide = QuantizedTensor("w", (2, 3), bfloat16(1.0), np.array([0, 1, 2, 3, -8, 0]))
    with pytest.raises(CamfieldsError, match=r"tensor w has integers beyond \+-7, the 4-bit range"):
        write_bitstream(tmp_path / "w.camf", {}, 4, [wide])
    write_bitstream(tmp_path / "w.camf", {}, 4, [wide], version=3)  # one shared histogram takes any integers
    assert np.array_equal(read_bitstream(tmp_path / "w.camf").tensors[0].values, wide.values)
    for version in (2, 6):
        with pytest.raises(CamfieldsError, match=f"cannot write bitstream format {version}"):
            write_bitstream(tmp_path / "w.camf", {}, 4, [wide], version=version)


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


def test_psnr_at_rate_reads_a_curve_linearly_in_log_rate():
    rates, psnrs = [0.04, 0.01, 0.02], [36.0, 30.0, 33.0]  # unsorted on purpose
    assert psnr_at_rate(rates, psnrs, 0.02) == pytest.approx(33.0)
    assert psnr_at_rate(rates, psnrs, 0.02 * 2**0.5) == pytest.approx(34.5)  # halfway in log rate
    assert psnr_at_rate(rates, psnrs, 0.01) == pytest.approx(30.0)
    assert psnr_at_rate(rates, psnrs, 0.009) is None and psnr_at_rate(rates, psnrs, 0.05) is None  # no extrapolation
    # a one-point curve (a single CRF) is read at its own rate only
    assert psnr_at_rate([0.01], [30.0], 0.01) == 30.0 and psnr_at_rate([0.01], [30.0], 0.02) is None
    with pytest.raises(CamfieldsError, match="at least 1"):
        psnr_at_rate([], [], 0.01)


def test_per_channel_steps_quantize_channels_of_different_scales_more_finely():
    import torch

    from camfields.compression.quantize import fake_quantize, symmetric_integers

    torch.manual_seed(0)
    weight = torch.randn(6, 4, 3, 3) * torch.logspace(-3, 0, 6).view(6, 1, 1, 1)
    per_tensor, per_channel = fake_quantize(weight, 6), fake_quantize(weight, 6, per_channel=True)
    for channel in range(5):  # the small channels: per-tensor steps round most of them to zero
        error_tensor = (per_tensor[channel] - weight[channel]).abs().max()
        error_channel = (per_channel[channel] - weight[channel]).abs().max()
        assert error_channel < 0.5 * error_tensor
    values, steps = symmetric_integers(weight, 6, per_channel=True)
    assert steps.shape == (6,) and values.abs().flatten(1).amax(1).le(31).all()
    assert values.abs().flatten(1).amax(1).ge(30).all()  # every channel spans its range
    assert torch.equal(values * steps.view(6, 1, 1, 1), per_channel)
    bias = torch.randn(5)
    assert symmetric_integers(bias, 6, per_channel=True)[1].shape == (1,)  # a bias keeps one step


def video_header_tensors() -> list[QuantizedTensor]:
    """The tensors of a small ffnerv_cam generator, named and shaped as the video codec writes them."""
    shapes = {
        "stem.levels.0.table": (4, 288),
        "stem.levels.1.table": (16, 144),
        "convs.0.weight": (200, 3, 3, 3),
        "convs.0.bias": (200,),
        "convs.1.weight": (28, 8, 3, 3),
        "convs.1.bias": (28,),
        "head.weight": (3, 6, 1, 1),
        "head.bias": (3,),
        "time_grid.table": (10, 30),
    }
    rng = np.random.default_rng(2)
    return [
        QuantizedTensor(name, shape, bfloat16(0.01), np.round(rng.normal(0, 6, int(np.prod(shape)))).clip(-31, 31))
        for name, shape in shapes.items()
    ]


def with_plain_zlib_header(path, version: int) -> bytes:
    """The file at ``path`` with its header recompressed by zlib without the preset dictionary, as ``version``."""
    import struct
    import zlib

    from camfields.codec.header_dictionary import header_dictionary

    data = path.read_bytes()
    _, written, length = struct.unpack_from("<8sHI", data)
    text = zlib.decompressobj(zdict=header_dictionary(written)).decompress(data[14 : 14 + length])
    return framed(version, zlib.compress(text, 9), data[14 + length : -4])


def test_header_dictionary_halves_a_video_header_and_format_2_files_still_read(tmp_path):
    import struct

    path = tmp_path / "v.camf"
    config = {"format": "camfields-video/1", "width": 320, "height": 180, "frames": 132}
    config["generator"] = {"strides": [5, 2, 2], "channels": 8, "time_grid": 10, "embedding": "grids"}
    size = write_bitstream(path, config, 6, video_header_tensors(), version=3)
    plain = with_plain_zlib_header(path, 2)  # format 2: the same header, zlib without the dictionary
    header_bytes = [struct.unpack_from("<8sHI", data)[2] for data in (path.read_bytes(), plain)]
    assert header_bytes[0] < 0.6 * header_bytes[1] and len(plain) - size == header_bytes[1] - header_bytes[0]
    old = tmp_path / "v2.camf"
    old.write_bytes(plain)
    decoded, written = read_bitstream(old), read_bitstream(path)
    assert decoded.config == written.config == config and decoded.file_bytes == len(plain)
    assert all(np.array_equal(a.values, b.values) for a, b in zip(decoded.tensors, written.tensors))
    for version in (1, 6):
        forged = tmp_path / f"v{version}.camf"
        forged.write_bytes(with_plain_zlib_header(path, version))
        with pytest.raises(CamfieldsError, match=f"format version {version}; this camfields reads versions 2, 3, 4, 5"):
            read_bitstream(forged)


def test_tensor_bits_splits_the_payload_estimate_by_tensor(tmp_path):
    from camfields.codec.bitstream import tensor_bits

    flat = QuantizedTensor("flat", (8,), bfloat16(1.0), np.full(8, 3, dtype=np.int64))
    four = QuantizedTensor("four", (4, 4), bfloat16(*[1.0] * 4), np.tile(np.arange(4), 4))
    path = tmp_path / "t.camf"
    write_bitstream(path, {}, 4, [flat, four], version=3)
    stream = read_bitstream(path)
    rows = {r["name"]: r for r in tensor_bits(stream)}
    assert rows["flat"]["own_bits"] == 0 and rows["four"]["own_bits"] == pytest.approx(32)  # 16 weights x 2 bits
    assert (rows["four"]["weights"], rows["four"]["steps"], rows["four"]["shape"]) == (16, 4, [4, 4])
    # under the file's histogram: symbol 3 has 12 of 24 (1 bit), 0, 1 and 2 have 4 of 24 each (log2 6 bits)
    assert rows["flat"]["coded_bits"] == pytest.approx(8.0)
    assert rows["four"]["coded_bits"] == pytest.approx(4 * 1 + 12 * np.log2(6))
    assert sum(r["coded_bits"] for r in rows.values()) == pytest.approx(stream.estimated_payload_bits)
    # format 4: each tensor under its own geometric model, the one with the fewest bits
    write_bitstream(path, {}, 4, [flat, four])
    stream = read_bitstream(path)
    for row, tensor, (low, counts) in zip(tensor_bits(stream), stream.tensors, stream.models):
        assert low == -7 and len(counts) == 15
        probabilities = counts / counts.sum()
        assert row["coded_bits"] == pytest.approx(-np.log2(probabilities[tensor.values + 7]).sum())
        tallies = np.bincount(tensor.values + 7, minlength=15)
        others = [entropy.geometric_counts(t, z, 7) for t in range(0, 65536, 4099) for z in (0, 200, 300, 65535)]
        assert row["coded_bits"] <= entropy.cross_entropy_bits(tallies, np.stack(others)).min() + 1e-9


def test_geometric_models_are_integer_tables_and_the_encoder_picks_the_cheapest():
    half = entropy.geometric_counts(32768, 1024, 3)  # ratio 1/2: the counts halve away from 0
    assert half.tolist() == [1 << 22, 1 << 23, 1 << 24, 1 << 26, 1 << 24, 1 << 23, 1 << 22]
    assert entropy.geometric_counts(0, 0, 2).tolist() == [1, 1 << 24, 1, 1 << 24, 1]  # every symbol stays codable
    assert entropy.geometric_counts(65535, 256, 31).min() > (1 << 24) * 0.999  # nearly flat
    rng = np.random.default_rng(3)
    every_theta = entropy.geometric_tails(np.arange(65536), 31)
    for scale, pruned in ((0.3, 0.0), (2.0, 0.0), (9.0, 0.0), (9.0, 0.5)):
        symbols = np.clip(np.round(rng.laplace(0, scale, 3000)), -31, 31).astype(np.int64)
        symbols[: int(pruned * len(symbols))] = 0
        theta, zero = entropy.best_geometric_model(symbols, 31)
        tallies = np.bincount(symbols + 31, minlength=63)
        chosen = entropy.cross_entropy_bits(tallies, entropy.geometric_counts(theta, zero, 31))
        # no theta does better with the zero count that matches the zeros' frequency (or its neighbours)
        tails = np.concatenate([every_theta[:, ::-1], np.zeros((65536, 1), np.int64), every_theta], axis=1)
        for shift in (-1, 0, 1):
            counts = tails.copy()
            counts[:, 31] = max((zero + shift) * (1 << 16), 1)
            assert chosen <= entropy.cross_entropy_bits(tallies, counts).min() + 1e-6
        if pruned:  # a spike of zeros gets a count of its own, far above the geometric curve
            assert zero * (1 << 16) > 5 * entropy.geometric_tails(np.array([theta]), 31)[0, 0]
    with pytest.raises(CamfieldsError, match="0 <= theta < 65536"):
        entropy.geometric_counts(65536, 0, 3)
    with pytest.raises(CamfieldsError, match="zero count"):
        entropy.geometric_counts(0, 1 << 16, 3)


def test_per_tensor_models_code_tensors_of_different_spreads_in_fewer_bytes(tmp_path):
    rng = np.random.default_rng(4)
    narrow = np.clip(np.round(rng.laplace(0, 0.7, 4000)), -127, 127).astype(np.int64)
    wide = np.clip(np.round(rng.laplace(0, 25, 4000)), -127, 127).astype(np.int64)
    spread = [QuantizedTensor(n, (4000,), bfloat16(1.0), v) for n, v in (("narrow", narrow), ("wide", wide))]
    sizes = {v: write_bitstream(tmp_path / f"{v}.camf", {}, 8, spread, version=v) for v in (3, 4)}
    assert sizes[4] < 0.9 * sizes[3], sizes
    decoded = read_bitstream(tmp_path / "4.camf")
    assert all(np.array_equal(a.values, b.values) for a, b in zip(decoded.tensors, spread))


def test_tensors_a_model_leaves_no_choice_cost_no_payload(tmp_path):
    zeros = QuantizedTensor("z", (50,), bfloat16(1.0), np.zeros(50, dtype=np.int64))
    for bits, version in ((1, 4), (8, 3)):  # a 1-bit code has one level; a histogram of one symbol
        path = tmp_path / f"z{bits}.camf"
        write_bitstream(path, {}, bits, [zeros], version=version)
        stream = read_bitstream(path)
        assert np.array_equal(stream.tensors[0].values, zeros.values) and stream.estimated_payload_bits == 0


def test_a_file_without_contexts_takes_the_format_whose_dictionary_codes_its_header_shorter(tmp_path):
    import struct

    video = {"format": "camfields-video/1", "width": 320, "height": 180, "frames": 132}
    video["generator"] = {"strides": [5, 2, 2], "channels": 8, "time_grid": 10, "embedding": "grids"}
    image = {"format": "camfields-image/1", "height": 256, "width": 384, "channels": 3, "png_bits": 8}
    image["field"] = {"encoding": {"kind": "fourier", "num_features": 64}, "hidden": 16, "depth": 2}
    for config, expected in ((video, 4), (image, 5)):
        sizes = {
            v: write_bitstream(tmp_path / f"{v}.camf", config, 6, video_header_tensors(), version=v) for v in (4, 5)
        }
        size = write_bitstream(tmp_path / "auto.camf", config, 6, video_header_tensors())
        written = struct.unpack_from("<8sHI", (tmp_path / "auto.camf").read_bytes())[1]
        assert written == expected and size == sizes[expected] == min(sizes.values())
        assert (tmp_path / "auto.camf").read_bytes() == (tmp_path / f"{expected}.camf").read_bytes()
    assert sizes[5] < sizes[4] - 50  # the image header codes far shorter against format 5's dictionary
