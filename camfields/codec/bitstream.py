"""The bitstream file of a compressed field: a header and range-coded quantized weights.

Layout (little-endian)::

    magic     8 bytes  b"CAMFCODE"
    version   u16      FORMAT_VERSION
    length    u32      bytes of the compressed header
    header    zlib-compressed UTF-8 JSON: {"config": ..., "bits": n, "low": int,
              "counts": [...], "tensors": [{"name", "shape", "steps"}], "words": int};
              from format 3 on compressed with the preset dictionary HEADER_DICTIONARY
    steps     u16 each: every tensor's "steps" quantization steps in order, as bfloat16 bits
    payload   "words" uint32 words: every tensor's integers, range-coded in order
    crc32     u32      CRC-32 of everything before it

Weights are stored as integers q with ``w = q * step``: one step per tensor, or one per slice
along its first dimension (output channel). Steps are bfloat16 numbers (the upper half of a
float32), so 16 bits store them exactly. The format holds no pickled objects: JSON and raw
integers only. Every length is checked against the file size and fixed limits before anything
is allocated, and the checksum is verified before decoding, so a truncated, corrupted or
hostile file is reported, never decoded.
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
FORMAT_VERSION = 3
#: versions this reader decodes: 2 (plain zlib header) and 3 (zlib with HEADER_DICTIONARY)
READABLE_VERSIONS = (2, 3)
#: zlib preset dictionary of the header from format 3 on: the keys and names the video codec's
#: headers repeat, so zlib refers back to them instead of spelling them out (a 14k-parameter
#: model's header shrinks from about 460 to 225 bytes, 3 % of its file). Any header compresses
#: with it; changing it changes the format and needs a new version.
HEADER_DICTIONARY = (
    b'{"config":{"format":"camfields-video/1","width":1280,"height":720,"frames":132,"generator":'
    b'{"strides":[5,2,2,2,2],"channels":64,"stem_channels":32,"stem_hidden":128,"reduce":1.2,'
    b'"min_channels":12,"embedding_levels":80,"time_grid":30,"cam_norm":"instance","embedding":"grids",'
    b'"frame_grids":[[8,16],[32,4]]}},"bits":6,"low":-31,"counts":[1,2,3,10,100,1000],"tensors":['
    b'{"name":"stem.0.weight","shape":[128,160],"steps":1},{"name":"stem.0.bias","shape":[128],"steps":1},'
    b'{"name":"stem.2.weight","shape":[1,1],"steps":1},{"name":"stem.2.bias","shape":[1],"steps":1},'
    b'{"name":"stem.levels.0.table","shape":[8,288],"steps":1},'
    b'{"name":"stem.levels.1.table","shape":[32,144],"steps":1},'
    b'{"name":"convs.0.weight","shape":[200,3,3,3],"steps":1},{"name":"convs.0.bias","shape":[200],"steps":1},'
    b'{"name":"convs.1.weight","shape":[28,8,3,3],"steps":1},{"name":"convs.1.bias","shape":[28],"steps":1},'
    b'{"name":"convs.2.weight","shape":[24,7,3,3],"steps":1},{"name":"convs.2.bias","shape":[24],"steps":1},'
    b'{"name":"convs.3.weight","shape":[20,6,3,3],"steps":1},{"name":"convs.3.bias","shape":[20],"steps":1},'
    b'{"name":"convs.4.weight","shape":[16,5,3,3],"steps":1},{"name":"convs.4.bias","shape":[16],"steps":1},'
    b'{"name":"head.weight","shape":[3,6,1,1],"steps":1},{"name":"head.bias","shape":[3],"steps":1},'
    b'{"name":"time_grid.table","shape":[30,42],"steps":1}],"words":1}'
)
_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")
#: limits a decoder enforces before allocating anything
MAX_HEADER_BYTES = 1 << 24
MAX_ELEMENTS = 1 << 28
MAX_TENSORS = 4096
MAX_SYMBOLS = (1 << 16) + 1


@dataclass
class QuantizedTensor:
    """A named tensor stored as integers ``values`` (shape ``shape``) times ``steps``: one step for
    the whole tensor, or one per slice along its first dimension."""

    name: str
    shape: tuple[int, ...]
    steps: np.ndarray  # float32 bfloat16 numbers, 1 or ``shape[0]`` of them
    values: np.ndarray  # int64, ``prod(shape)`` elements

    def dequantize(self) -> np.ndarray:
        """The float32 weights ``values * step`` in ``shape`` (exact: a bfloat16 step times an integer
        below 2^16 fits a float32)."""
        slices = self.values.astype(np.float64).reshape(len(self.steps), -1)
        return (slices * self.steps.astype(np.float64)[:, None]).astype(np.float32).reshape(self.shape)


@dataclass
class Bitstream:
    """What a file holds: the model config, the bit depth, the tensors and the coded size."""

    config: dict[str, Any]
    bits: int
    tensors: list[QuantizedTensor]
    file_bytes: int = 0
    estimated_payload_bits: float = 0.0  # Shannon bound of the payload: an estimate, labelled as such


def tensor_bits(stream: Bitstream) -> list[dict[str, Any]]:
    """Where the bits of a file go, per tensor: name, shape, number of weights and steps, and the
    Shannon bits of its integers under the file's histogram (``shared_bits``, what the payload
    spends on it, an estimate) and under its own histogram (``own_bits``, the bound for coding it
    alone, without the cost of sending that histogram)."""
    symbols = np.concatenate([t.values.reshape(-1) for t in stream.tensors]) if stream.tensors else np.zeros(0)
    low, counts = entropy.histogram(symbols.astype(np.int64))
    total = max(int(counts.sum()), 1)
    rows = []
    for t in stream.tensors:
        values = t.values.reshape(-1).astype(np.int64)
        shared = float(-np.log2(counts[values - low] / total).sum()) if values.size else 0.0
        own = entropy.estimated_bits(entropy.histogram(values)[1]) if values.size else 0.0
        rows.append(
            {"name": t.name, "shape": list(t.shape), "weights": int(values.size), "steps": len(t.steps)}
            | {"shared_bits": shared, "own_bits": own}
        )
    return rows


def _valid_step_count(count: int, shape: list[int]) -> bool:
    """One step per tensor, or one per slice along dim 0 of a tensor of 2 or more dims."""
    return count == 1 or (len(shape) > 1 and count == shape[0] > 0)


def _bfloat16_bits(tensor: QuantizedTensor) -> np.ndarray:
    """The steps of ``tensor`` as uint16 bfloat16 bit patterns; an error if one is not a bfloat16 number."""
    steps = np.asarray(tensor.steps, dtype=np.float32).reshape(-1)
    if not _valid_step_count(len(steps), list(tensor.shape)):
        raise CamfieldsError(f"tensor {tensor.name} has {len(steps)} steps; it needs 1 or one per slice of dim 0")
    words = steps.view(np.uint32)
    if np.any(words & 0xFFFF) or not np.all(np.isfinite(steps) & (steps > 0)):
        raise CamfieldsError(f"the steps of tensor {tensor.name} are not positive bfloat16 numbers")
    return (words >> 16).astype("<u2")


def write_bitstream(path: Path, config: dict[str, Any], bits: int, tensors: list[QuantizedTensor]) -> int:
    """Write the bitstream file; returns its size in bytes."""
    steps = [_bfloat16_bits(t) for t in tensors]
    flat = [t.values.reshape(-1).astype(np.int64) for t in tensors]
    symbols = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    low, counts = entropy.histogram(symbols)
    words = entropy.encode(symbols, low, counts)
    header = {
        "config": config,
        "bits": bits,
        "low": low,
        "counts": counts.tolist(),
        "tensors": [{"name": t.name, "shape": list(t.shape), "steps": len(s)} for t, s in zip(tensors, steps)],
        "words": int(len(words)),
    }
    deflater = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    packed = deflater.compress(json.dumps(header, separators=(",", ":")).encode()) + deflater.flush()
    step_bytes = b"".join(s.tobytes() for s in steps)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(packed)) + packed + step_bytes + words.astype("<u4").tobytes()
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
        steps = entry.get("steps") if ok else None
        ok = ok and isinstance(steps, int) and _valid_step_count(steps, entry["shape"])
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
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise _fail(path, f"format version {version}; this camfields reads versions {readable}")
    if header_bytes > MAX_HEADER_BYTES or _PREFIX.size + header_bytes + _CRC.size > len(data):
        raise _fail(path, "its header length runs past the end of the file (truncated?)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise _fail(path, "checksum mismatch (the file is truncated or corrupted)")
    try:
        inflater = zlib.decompressobj(zdict=HEADER_DICTIONARY) if version >= 3 else zlib.decompressobj()
        text = inflater.decompress(data[_PREFIX.size : _PREFIX.size + header_bytes], 4 * MAX_HEADER_BYTES)
        if inflater.unconsumed_tail:
            raise _fail(path, "its header inflates past the size limit")
        header = json.loads(text)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"its header cannot be read ({e})") from None
    _check_header(path, header)
    step_counts = [entry["steps"] for entry in header["tensors"]]
    body = data[_PREFIX.size + header_bytes : -_CRC.size]
    expected = 2 * sum(step_counts) + 4 * header["words"]
    if len(body) != expected:
        raise _fail(path, f"steps and payload are {len(body)} bytes, the header says {expected}")
    all_steps = (np.frombuffer(body, dtype="<u2", count=sum(step_counts)).astype(np.uint32) << 16).view(np.float32)
    if not np.all(np.isfinite(all_steps) & (all_steps > 0)):
        raise _fail(path, "a quantization step is not a positive finite number")
    payload = body[2 * sum(step_counts) :]
    counts = np.asarray(header["counts"], dtype=np.int64)
    shapes = [tuple(entry["shape"]) for entry in header["tensors"]]
    sizes = [math.prod(shape) for shape in shapes]
    symbols = entropy.decode(np.frombuffer(payload, dtype="<u4"), sum(sizes), header["low"], counts)
    tensors, start, first_step = [], 0, 0
    for entry, shape, size, count in zip(header["tensors"], shapes, sizes, step_counts):
        steps = all_steps[first_step : first_step + count]
        tensors.append(QuantizedTensor(entry["name"], shape, steps, symbols[start : start + size]))
        start, first_step = start + size, first_step + count
    return Bitstream(header["config"], header["bits"], tensors, len(data), entropy.estimated_bits(counts))
