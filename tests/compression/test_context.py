"""Context coding of latent planes: the contexts, their files and their rate estimate."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest
import torch

from camfields.codec.bitstream import QuantizedTensor, read_bitstream, tensor_bits, write_bitstream
from camfields.codec.header_dictionary import header_dictionary
from camfields.compression.context import (
    CONTEXT_EDGES,
    as_planes,
    context_indices,
    context_rate_bits,
    context_widths,
)
from camfields.errors import CamfieldsError
from camfields.fields import EncodingConfig, FieldConfig, PyramidConfig, build_field


def brute_force_contexts(plane: np.ndarray) -> np.ndarray:
    """Every node's context from its six causal neighbours, one node at a time."""
    rows, width = plane.shape

    def at(r: int, c: int) -> int:
        return abs(int(plane[r, c])) if 0 <= r and 0 <= c < width else 0

    out = np.zeros_like(plane)
    for r in range(rows):
        for c in range(width):
            activity = 2 * at(r, c - 1) + 2 * at(r - 1, c) + at(r - 1, c - 1) + at(r - 1, c + 1)
            activity += at(r, c - 2) + at(r - 2, c)
            out[r, c] = sum(activity >= edge for edge in CONTEXT_EDGES)
    return out


def clustered_latents(rows: int, width: int, features: int, seed: int) -> np.ndarray:
    """A table (rows * width, features) of integers that are non-zero in a few blobs, as a rate-
    trained latent level is: zero almost everywhere, large near edges."""
    rng = np.random.default_rng(seed)
    planes = np.zeros((features, rows, width), dtype=np.int64)
    blob = min(6, rows // 2, width // 2)
    for f in range(features):
        for _ in range(4):
            r, c = rng.integers(0, rows - blob), rng.integers(0, width - blob)
            planes[f, r : r + blob, c : c + blob] = rng.integers(-9, 10, (blob, blob))
    return planes.reshape(features, -1).T.copy()


def test_contexts_equal_a_node_by_node_count_of_the_causal_neighbours():
    rng = np.random.default_rng(0)
    planes = rng.integers(-6, 7, (3, 7, 9)) * (rng.random((3, 7, 9)) < 0.4)
    got = context_indices(torch.from_numpy(planes)).numpy()
    for plane, contexts in zip(planes, got):
        assert np.array_equal(contexts, brute_force_contexts(plane))
    assert got.max() == len(CONTEXT_EDGES) and got.min() == 0  # both ends reached


def test_context_coded_tensors_decode_exactly_and_code_clustered_latents_smaller(tmp_path):
    latents = [clustered_latents(48, 64, 2, 1), clustered_latents(24, 32, 1, 2)]
    one = np.ones(1, dtype=np.float32)
    tensors = [
        QuantizedTensor("mlp", (5, 3), one, np.arange(15) % 7 - 3),
        QuantizedTensor("fine", (3072, 2), one, latents[0].reshape(-1), context_width=64),
        QuantizedTensor("coarse", (768, 1), one, latents[1].reshape(-1), context_width=32),
    ]
    size = write_bitstream(tmp_path / "c.camf", {"k": 1}, 6, tensors)
    stream = read_bitstream(tmp_path / "c.camf")
    for written, read in zip(tensors, stream.tensors):
        assert np.array_equal(read.values, written.values) and read.context_width == written.context_width
    plain = [dataclasses.replace(t, context_width=0) for t in tensors]
    assert size < 0.9 * write_bitstream(tmp_path / "p.camf", {"k": 1}, 6, plain)
    coded = sum(row["coded_bits"] for row in tensor_bits(stream))
    assert abs(coded / 8 - (size - 3 * 16)) < 0.25 * size  # the payload estimate accounts for the file


def test_latents_too_few_to_pay_for_the_context_models_are_coded_alone(tmp_path):
    one = np.ones(1, dtype=np.float32)
    small = QuantizedTensor("coarse", (48, 1), one, clustered_latents(6, 8, 1, 2).reshape(-1), context_width=8)
    size = write_bitstream(tmp_path / "s.camf", {}, 6, [small])
    assert size == write_bitstream(tmp_path / "p.camf", {}, 6, [dataclasses.replace(small, context_width=0)])
    read = read_bitstream(tmp_path / "s.camf").tensors[0]
    assert read.context_width == 0 and np.array_equal(read.values, small.values)


def test_a_forged_context_entry_is_refused_in_one_sentence(tmp_path):
    one = np.ones(1, dtype=np.float32)
    tensors = [QuantizedTensor("grid", (12, 1), one, np.arange(12) % 3, context_width=4)]
    with pytest.raises(CamfieldsError, match="format 4 has no context coding"):
        write_bitstream(tmp_path / "f.camf", {}, 6, tensors, version=4)
    with pytest.raises(CamfieldsError, match=r"of shape \(12, 1\) is not a non-empty grid table in rows of 5 nodes"):
        write_bitstream(tmp_path / "f.camf", {}, 6, [QuantizedTensor("grid", (12, 1), one, tensors[0].values, 5)])
    path = tmp_path / "f.camf"
    write_bitstream(path, {}, 6, tensors)
    data = path.read_bytes()
    _, _, length = struct.unpack_from("<8sHI", data)
    header = json.loads(zlib.decompressobj(zdict=header_dictionary(5)).decompress(data[14 : 14 + length]))
    for width, version in ((5, 5), ("4", 5), (-4, 5), (4, 4), (True, 5)):
        header["tensors"][0]["context"] = width
        deflater = zlib.compressobj(9, zdict=header_dictionary(version))
        packed = deflater.compress(json.dumps(header).encode()) + deflater.flush()
        body = struct.pack("<8sHI", b"CAMFCODE", version, len(packed)) + packed + data[14 + length : -4]
        forged = tmp_path / "forged.camf"
        forged.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
        with pytest.raises(CamfieldsError, match=r"forged.camf is not a valid camfields bitstream: tensor entry"):
            read_bitstream(forged)


def test_the_rate_estimate_follows_the_coded_bits_and_has_a_gradient(tmp_path):
    table = torch.from_numpy(clustered_latents(24, 32, 1, 3)).double().requires_grad_()
    estimate = context_rate_bits([table.abs()], [32])
    estimate.backward()
    one = np.ones(1, dtype=np.float32)
    values = table.detach().long().numpy().reshape(-1)
    stream_path = tmp_path / "r.camf"
    write_bitstream(stream_path, {}, 6, [QuantizedTensor("g", (768, 1), one, values, 32)])
    coded = tensor_bits(read_bitstream(stream_path))[0]["coded_bits"]
    assert 0.9 * coded < estimate.item() < 1.3 * coded
    assert table.grad.abs().sum() > 0 and torch.isfinite(table.grad).all()
    # the same latents scattered at random lose their context and cost more
    scattered = table.detach()[torch.randperm(768, generator=torch.Generator().manual_seed(0))]
    assert context_rate_bits([scattered.abs()], [32]).item() > 1.2 * estimate.item()


def test_a_pyramid_codes_every_level_under_contexts_in_raster_order():
    field = build_field(
        FieldConfig(encoding=EncodingConfig("pyramid", pyramid=PyramidConfig(levels=3, resolution=[10, 6])), hidden=8),
        2,
        3,
    )
    widths = context_widths(field)
    assert widths == {"encoding.grids.0.table": 10, "encoding.grids.1.table": 5, "encoding.grids.2.table": 3}
    grid = field.encoding.grids[1]
    planes = as_planes(grid.table, widths["encoding.grids.1.table"])
    assert torch.equal(planes, grid.as_image())  # rows of the image the grid samples
