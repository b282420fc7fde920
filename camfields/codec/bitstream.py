"""The bitstream file of a compressed field: a header and range-coded quantized weights.

Layout (little-endian)::

    magic     8 bytes  b"CAMFCODE"
    version   u16      FORMAT_VERSION
    length    u32      bytes of the compressed header
    header    zlib-compressed UTF-8 JSON: {"config": ..., "bits": n, "low": int,
              "counts": [...], "tensors": [{"name", "shape", "step"}], "words": int}
    payload   "words" uint32 words: every tensor's integers, range-coded in order
    crc32     u32      CRC-32 of everything before it

Weights are stored as integers q with ``w = q * step`` (one float step per tensor). The
format holds no pickled objects: JSON and raw integers only. Every length is checked against
the file size and fixed limits before anything is allocated, and the checksum is verified
before decoding, so a truncated, corrupted or hostile file is reported, never decoded.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camfields.codec import entropy
from camfields.errors import CamfieldsError

MAGIC = b"CAMFCODE"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
#: limits a decoder enforces before allocating anything
MAX_HEADER_BYTES = 1 << 24
MAX_ELEMENTS = 1 << 28
MAX_TENSORS = 4096
MAX_SYMBOLS = (1 << 16) + 1


@dataclass
class QuantizedTensor:
    """A named tensor stored as integers ``values`` (shape ``shape``) times ``step``."""

    name: str
    shape: tuple[int, ...]
    step: float
    values: np.ndarray  # int64, ``prod(shape)`` elements

    def dequantize(self) -> np.ndarray:
        """The float32 weights ``values * step`` in ``shape``."""
        return (self.values.astype(np.float64) * self.step).astype(np.float32).reshape(self.shape)


@dataclass
class Bitstream:
    """What a file holds: the model config, the bit depth, the tensors and the coded size."""

    config: dict[str, Any]
    bits: int
    tensors: list[QuantizedTensor]
    file_bytes: int = 0
    estimated_payload_bits: float = 0.0  # Shannon bound of the payload: an estimate, labelled as such


def write_bitstream(path: Path, config: dict[str, Any], bits: int, tensors: list[QuantizedTensor]) -> int:
    """Write the bitstream file; returns its size in bytes."""
    flat = [t.values.reshape(-1).astype(np.int64) for t in tensors]
    symbols = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    low, counts = entropy.histogram(symbols)
    words = entropy.encode(symbols, low, counts)
    header = {
        "config": config,
        "bits": bits,
        "low": low,
        "counts": counts.tolist(),
        "tensors": [{"name": t.name, "shape": list(t.shape), "step": float(t.step)} for t in tensors],
        "words": int(len(words)),
    }
    packed = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(packed)) + packed + words.astype("<u4").tobytes()
    data = body + _CRC.pack(zlib.crc32(body))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def _fail(path: Path, why: str) -> CamfieldsError:
    return CamfieldsError(f"{path} is not a valid camfields bitstream: {why}")


def _check_header(path: Path, header: Any) -> None:
    if not isinstance(header, dict) or not {"config", "bits", "low", "counts", "tensors", "words"} <= set(header):
        raise _fail(path, "its header lacks required fields")
    if not isinstance(header["bits"], int) or not 1 <= header["bits"] <= 16:
        raise _fail(path, f"bit depth {header['bits']!r} is outside 1..16")
    counts, tensors = header["counts"], header["tensors"]
    if not isinstance(counts, list) or not 1 <= len(counts) <= MAX_SYMBOLS:
        raise _fail(path, "its symbol histogram has an impossible length")
    if not all(isinstance(c, int) and c >= 0 for c in counts) or not isinstance(header["low"], int):
        raise _fail(path, "its symbol histogram holds non-integers")
    if not isinstance(tensors, list) or len(tensors) > MAX_TENSORS:
        raise _fail(path, "its tensor list is malformed or too long")
    total = 0
    for entry in tensors:
        ok = isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("shape"), list)
        ok = ok and all(isinstance(s, int) and 0 <= s <= MAX_ELEMENTS for s in entry["shape"])
        ok = ok and isinstance(entry.get("step"), (int, float)) and math.isfinite(entry["step"])
        if not ok:
            raise _fail(path, f"tensor entry {entry!r:.80} is malformed")
        total += math.prod(entry["shape"])
        if total > MAX_ELEMENTS:
            raise _fail(path, f"it declares more than {MAX_ELEMENTS} weights")
    if sum(counts) != total:
        raise _fail(path, f"its histogram counts {sum(counts)} symbols but the tensors hold {total}")


def read_bitstream(path: Path) -> Bitstream:
    """Read and verify a bitstream file; every problem is one CamfieldsError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CamfieldsError(f"cannot read bitstream {path}: {e.strerror or e}") from None
    if len(data) < _PREFIX.size + _CRC.size:
        raise _fail(path, f"it is only {len(data)} bytes long (truncated?)")
    magic, version, header_bytes = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise _fail(path, "wrong magic bytes (not a camfields file)")
    if version != FORMAT_VERSION:
        raise _fail(path, f"format version {version}; this camfields reads version {FORMAT_VERSION}")
    if header_bytes > MAX_HEADER_BYTES or _PREFIX.size + header_bytes + _CRC.size > len(data):
        raise _fail(path, "its header length runs past the end of the file (truncated?)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise _fail(path, "checksum mismatch (the file is truncated or corrupted)")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data[_PREFIX.size : _PREFIX.size + header_bytes], 4 * MAX_HEADER_BYTES)
        if inflater.unconsumed_tail:
            raise _fail(path, "its header inflates past the size limit")
        header = json.loads(text)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"its header cannot be read ({e})") from None
    _check_header(path, header)
    payload = data[_PREFIX.size + header_bytes : -_CRC.size]
    if len(payload) != 4 * header["words"]:
        raise _fail(path, f"payload is {len(payload)} bytes, the header says {4 * header['words']}")
    counts = np.asarray(header["counts"], dtype=np.int64)
    shapes = [tuple(entry["shape"]) for entry in header["tensors"]]
    sizes = [math.prod(shape) for shape in shapes]
    symbols = entropy.decode(np.frombuffer(payload, dtype="<u4"), sum(sizes), header["low"], counts)
    tensors, start = [], 0
    for entry, shape, size in zip(header["tensors"], shapes, sizes):
        tensors.append(QuantizedTensor(entry["name"], shape, float(entry["step"]), symbols[start : start + size]))
        start += size
    return Bitstream(header["config"], header["bits"], tensors, len(data), entropy.estimated_bits(counts))
