"""The bitstream file of a compressed field: a header and range-coded quantized weights.

Layout (little-endian)::

    magic     8 bytes  b"CAMFCODE"
    version   u16      FORMAT_VERSION
    length    u32      bytes of the compressed header
    header    zlib-compressed UTF-8 JSON: {"config": ..., "bits": n,
              "tensors": [{"name", "shape", "steps"[, "context"]}], "words": int}, from format 3
              on with the preset dictionary of its version (``codec.header_dictionary``);
              formats 2 and 3 also hold the shared symbol histogram, "low": int and "counts": [...]
    steps     u16 each: every tensor's "steps" quantization steps in order, as bfloat16 bits
    models    2 x u16 each (format 4 on): the model of every tensor without "context", theta and zero
              (``entropy.geometric_counts``); from format 5, when any tensor has "context", then
              one model per context of ``compression.context`` that all those tensors share
    payload   "words" uint32 words: every tensor's integers, range-coded in order
    crc32     u32      CRC-32 of everything before it

Weights are stored as integers q with ``w = q * step``: one step per tensor, or one per slice
along its first dimension (output channel). Steps are bfloat16 numbers (the upper half of a
float32), so 16 bits store them exactly. Format 4 codes each tensor's integers, which lie in
-(2^(n-1) - 1) .. 2^(n-1) - 1, under a model of its own: two-sided geometric with the count of
0 set apart (two 16-bit integers per tensor, chosen by the encoder for the fewest bits);
formats 2 and 3 code all of them under one histogram sent in the header. Format 5 adds context
coding: a tensor whose entry has "context": W (a latent grid's table (N, F), W nodes per row) is
coded plane by plane in raster order, each integer under the shared model of its causal context
(``compression.context``); the decoder derives each context from what it has decoded. Its
header dictionary adds image and scene headers to the video ones. The format holds no
pickled objects: JSON and raw integers only. Every length is checked against the file size
and fixed limits before anything is allocated, and the checksum is verified before decoding,
so a truncated, corrupted or hostile file is reported, never decoded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camfields.codec import entropy
from camfields.codec.header_dictionary import header_dictionary
from camfields.compression.context import CONTEXTS
from camfields.compression.quantize import symmetric_levels
from camfields.errors import CamfieldsError
from camfields.io.atomic import atomic_write

MAGIC = b"CAMFCODE"
FORMAT_VERSION = 5
#: versions this reader decodes: 2 (plain zlib header), 3 (zlib with a preset dictionary), both with
#: one shared histogram, 4 (per-tensor geometric models) and 5 (4 with context-coded tensors and
#: a header dictionary for image and scene headers too);
#: the writer writes 3, 4 (no context coding) or 5
READABLE_VERSIONS = (2, 3, 4, 5)
WRITABLE_VERSIONS = (3, 4, 5)
#: the first version with context-coded tensors
CONTEXT_VERSION = 5
_PREFIX = struct.Struct("<8sHI")
#: the header fields of every version, and those of the versions with a shared histogram
_FIELDS = {"config", "bits", "tensors", "words"}
_HISTOGRAM_FIELDS = {"low", "counts"}
_CRC = struct.Struct("<I")
#: limits a decoder enforces before allocating anything
MAX_HEADER_BYTES = 1 << 24
MAX_ELEMENTS = 1 << 28
MAX_TENSORS = 4096
MAX_SYMBOLS = (1 << 16) + 1
#: most weights a file may declare: any file MIN_WEIGHT_ALLOWANCE (16 MiB as float32), a larger one
#: MAX_WEIGHTS_PER_BYTE per byte it holds (1/128 bit each). A tensor the rate term has driven to
#: nearly all zeros codes below 1/8 bit per weight (a latent pyramid: 120,640 weights in 1,885
#: bytes), so the allowance, not the file's size, bounds what a small file can make a decoder allocate
MIN_WEIGHT_ALLOWANCE = 1 << 22
MAX_WEIGHTS_PER_BYTE = 1024


@dataclass
class QuantizedTensor:
    """A named tensor stored as integers ``values`` (shape ``shape``) times ``steps``: one step for
    the whole tensor, or one per slice along its first dimension. A ``context_width`` W > 0 marks a
    grid table (N, F) of N nodes in rows of W, coded under the contexts of ``compression.context``."""

    name: str
    shape: tuple[int, ...]
    steps: np.ndarray  # float32 bfloat16 numbers, 1 or ``shape[0]`` of them
    values: np.ndarray  # int64, ``prod(shape)`` elements
    context_width: int = 0

    def planes(self) -> np.ndarray:
        """The integers of a context-coded tensor as its planes (F, N / W, W), in coding order."""
        table = self.values.reshape(self.shape[0], -1)
        return table.T.reshape(table.shape[1], -1, self.context_width)

    def dequantize(self) -> np.ndarray:
        """The float32 weights ``values * step`` in ``shape`` (exact: a bfloat16 step times an integer
        below 2^16 fits a float32)."""
        slices = self.values.astype(np.float64).reshape(len(self.steps), -1)
        return (slices * self.steps.astype(np.float64)[:, None]).astype(np.float32).reshape(self.shape)


@dataclass
class Bitstream:
    """What a file holds: the model config, the bit depth, the tensors, the model each tensor's
    integers were coded under ((low, counts), see ``entropy``) and the file size."""

    config: dict[str, Any]
    bits: int
    tensors: list[QuantizedTensor]
    models: list[tuple[int, np.ndarray]]
    file_bytes: int = 0

    @property
    def estimated_payload_bits(self) -> float:
        """Shannon bits of the payload under its models: an estimate, labelled as such."""
        return sum(row["coded_bits"] for row in tensor_bits(self))


def tensor_bits(stream: Bitstream) -> list[dict[str, Any]]:
    """Where the bits of a file go, per tensor: name, shape, number of weights and steps, and the
    Shannon bits of its integers under the model the file codes them with (``coded_bits``, what the
    payload spends on it, an estimate) and under their own histogram (``own_bits``, the bound for
    coding them alone, without the cost of sending that histogram)."""
    rows = []
    for t, (low, counts) in zip(stream.tensors, stream.models):
        values = t.values.reshape(-1).astype(np.int64)
        if counts.ndim == 2:  # one model per context
            contexts = entropy.contexts_of(t.planes()).reshape(-1)
            tallies = [
                np.bincount(t.planes().reshape(-1)[contexts == c] - low, minlength=counts.shape[1])
                for c in range(len(counts))
            ]
            coded = float(sum(entropy.cross_entropy_bits(tally, row) for tally, row in zip(tallies, counts)))
        else:
            coded = float(entropy.cross_entropy_bits(np.bincount(values - low, minlength=len(counts)), counts))
        own = entropy.estimated_bits(entropy.histogram(values)[1]) if values.size else 0.0
        rows.append(
            {"name": t.name, "shape": list(t.shape), "weights": int(values.size), "steps": len(t.steps)}
            | {"coded_bits": coded, "own_bits": own}
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


def write_bitstream(
    path: Path, config: dict[str, Any], bits: int, tensors: list[QuantizedTensor], version: int | None = None
) -> int:
    """Write the bitstream file (format ``version``: 5, 4 without context coding, or 3 for one shared
    histogram); returns its size in bytes. Formats 4 and 5 need every integer within the
    ``bits``-bit range, +-(2^(bits-1) - 1).

    By default (``version`` None) a file with context-coded tensors is format 5; one without is
    format 4 or 5, whichever header dictionary codes its header in fewer bytes (a video header
    codes best against format 4's, which ends with the video keys; an image or scene header
    against format 5's), so no file grows from the dictionary that does not suit it."""
    if version is not None and version not in WRITABLE_VERSIONS:
        raise CamfieldsError(f"cannot write bitstream format {version}; this camfields writes {WRITABLE_VERSIONS}")
    if not 1 <= bits <= 16:
        raise CamfieldsError(f"bit depth {bits} is outside 1..16")
    steps = [_bfloat16_bits(t) for t in tensors]
    flat = [t.values.reshape(-1).astype(np.int64) for t in tensors]
    header: dict[str, Any] = {"config": config, "bits": bits}
    if version is not None and version < CONTEXT_VERSION and any(t.context_width for t in tensors):
        raise CamfieldsError(f"bitstream format {version} has no context coding; write format {CONTEXT_VERSION}")
    if version == 3:
        low, counts = entropy.histogram(np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64))
        header |= {"low": low, "counts": counts.tolist()}
        models, model_bytes = [(low, counts)] * len(flat), b""
    else:
        top = symmetric_levels(bits)
        for t, values in zip(tensors, flat):
            if values.size and np.abs(values).max() > top:
                raise CamfieldsError(f"tensor {t.name} has integers beyond +-{top}, the {bits}-bit range")
        shared = _context_models([t for t in tensors if t.context_width], top)
        if not shared:  # no context-coded tensor, or coding them alone costs no more
            tensors = [dataclasses.replace(t, context_width=0) for t in tensors]
        chosen = [entropy.best_geometric_model(values, top) for t, values in zip(tensors, flat) if not t.context_width]
        table = np.stack([entropy.geometric_counts(theta, zero, top) for theta, zero in shared]) if shared else None
        alone = iter(chosen)
        models = [(-top, table if t.context_width else entropy.geometric_counts(*next(alone), top)) for t in tensors]
        model_bytes = np.asarray(chosen + shared, dtype="<u2").reshape(-1, 2).tobytes()
    symbols = [t.planes() if t.context_width else values for t, values in zip(tensors, flat)]
    words = entropy.encode([(values, low, counts) for values, (low, counts) in zip(symbols, models)])
    header["tensors"] = [
        {"name": t.name, "shape": list(t.shape), "steps": len(s)}
        | ({"context": t.context_width} if t.context_width else {})
        for t, s in zip(tensors, steps)
    ]
    header["words"] = int(len(words))
    text = json.dumps(header, separators=(",", ":")).encode()
    if version is not None:
        candidates = [version]
    else:
        candidates = [CONTEXT_VERSION] if any(t.context_width for t in tensors) else [4, CONTEXT_VERSION]
    packed, version = min(((_packed_header(text, v), v) for v in candidates), key=lambda pair: len(pair[0]))
    step_bytes = b"".join(s.tobytes() for s in steps)
    body = _PREFIX.pack(MAGIC, version, len(packed)) + packed + step_bytes + model_bytes + words.astype("<u4").tobytes()
    data = body + _CRC.pack(zlib.crc32(body))
    atomic_write(Path(path), lambda f: f.write(data))
    return len(data)


def _packed_header(text: bytes, version: int) -> bytes:
    """The header JSON ``text`` compressed against the dictionary of format ``version``."""
    deflater = zlib.compressobj(9, zdict=header_dictionary(version))
    return deflater.compress(text) + deflater.flush()


def _has_rows(shape: list[int] | tuple[int, ...], width: int) -> bool:
    """A non-empty grid table (N, ...) whose N nodes fill rows of ``width``."""
    return bool(shape) and math.prod(shape) > 0 and shape[0] % width == 0


def _model_bits(values: np.ndarray, model: tuple[int, int], top: int) -> float:
    """Bits of coding ``values`` under the geometric model (theta, zero) over -top .. top, plus the model's 32."""
    tallies = np.bincount(values + top, minlength=2 * top + 1)
    return float(entropy.cross_entropy_bits(tallies, entropy.geometric_counts(*model, top))) + 32


def _context_models(tensors: list[QuantizedTensor], top: int) -> list[tuple[int, int]]:
    """The (theta, zero) of each context's model, chosen for the fewest bits over the integers of
    every context-coded tensor in that context; none without such tensors, or where coding each
    of them alone under a model of its own costs no more bits, models included."""
    if not tensors:
        return []
    for t in tensors:
        if not _has_rows(t.shape, t.context_width):
            raise CamfieldsError(
                f"tensor {t.name} of shape {t.shape} is not a non-empty grid table in rows of {t.context_width} nodes"
            )
    planes = [t.planes() for t in tensors]
    values = np.concatenate([p.reshape(-1) for p in planes])
    contexts = np.concatenate([entropy.contexts_of(p).reshape(-1) for p in planes])
    shared = [entropy.best_geometric_model(values[contexts == c], top) for c in range(CONTEXTS)]
    with_contexts = sum(_model_bits(values[contexts == c], model, top) for c, model in enumerate(shared))
    flat = [t.values.reshape(-1) for t in tensors]
    alone = sum(_model_bits(v, entropy.best_geometric_model(v, top), top) for v in flat)
    return shared if with_contexts < alone else []


def _fail(path: Path, why: str) -> CamfieldsError:
    return CamfieldsError(f"{path} is not a valid camfields bitstream: {why}")


def _check_header(path: Path, header: Any, version: int, file_bytes: int) -> None:
    shared = version < 4  # formats 2 and 3: one histogram for every tensor
    if not isinstance(header, dict) or not _FIELDS | (_HISTOGRAM_FIELDS if shared else set()) <= set(header):
        raise _fail(path, "its header lacks required fields")
    if not isinstance(header["bits"], int) or not 1 <= header["bits"] <= 16:
        raise _fail(path, f"bit depth {header['bits']!r} is outside 1..16")
    if not isinstance(header["words"], int) or header["words"] < 0:
        raise _fail(path, "its payload length is not a count")
    if shared:
        counts = header["counts"]
        if not isinstance(counts, list) or not 1 <= len(counts) <= MAX_SYMBOLS:
            raise _fail(path, "its symbol histogram has an impossible length")
        if not all(isinstance(c, int) and c >= 0 for c in counts) or not isinstance(header["low"], int):
            raise _fail(path, "its symbol histogram holds non-integers")
    tensors = header["tensors"]
    if not isinstance(tensors, list) or len(tensors) > MAX_TENSORS:
        raise _fail(path, "its tensor list is malformed or too long")
    total = 0
    limit = min(MAX_ELEMENTS, max(MIN_WEIGHT_ALLOWANCE, MAX_WEIGHTS_PER_BYTE * file_bytes))
    for entry in tensors:
        ok = isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("shape"), list)
        ok = ok and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_ELEMENTS for s in entry["shape"]
        )
        steps = entry.get("steps") if ok else None
        ok = ok and isinstance(steps, int) and not isinstance(steps, bool) and _valid_step_count(steps, entry["shape"])
        width = entry.get("context", 0) if ok else 0
        ok = ok and isinstance(width, int) and not isinstance(width, bool) and width >= 0
        ok = ok and (not width or (version >= CONTEXT_VERSION and _has_rows(entry["shape"], width)))
        if not ok:
            raise _fail(path, f"tensor entry {entry!r:.80} is malformed")
        total += math.prod(entry["shape"])
        if total > limit:
            raise _fail(path, f"it declares more than {limit} weights, the most {file_bytes} bytes may declare")
    if shared and sum(header["counts"]) != total:
        raise _fail(path, f"its histogram counts {sum(header['counts'])} symbols but the tensors hold {total}")


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
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise _fail(path, f"format version {version}; this camfields reads versions {readable}")
    if header_bytes > MAX_HEADER_BYTES or _PREFIX.size + header_bytes + _CRC.size > len(data):
        raise _fail(path, "its header length runs past the end of the file (truncated?)")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise _fail(path, "checksum mismatch (the file is truncated or corrupted)")
    try:
        dictionary = header_dictionary(version)
        inflater = zlib.decompressobj(zdict=dictionary) if dictionary else zlib.decompressobj()
        text = inflater.decompress(data[_PREFIX.size : _PREFIX.size + header_bytes], 4 * MAX_HEADER_BYTES)
        if inflater.unconsumed_tail:
            raise _fail(path, "its header inflates past the size limit")
        header = json.loads(text)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"its header cannot be read ({e})") from None
    _check_header(path, header, version, len(data))
    entries, bits = header["tensors"], header["bits"]
    step_counts = [entry["steps"] for entry in entries]
    widths = [entry.get("context", 0) for entry in entries]
    model_count = sum(not w for w in widths) + (CONTEXTS if any(widths) else 0)
    model_bytes = 4 * model_count if version >= 4 else 0
    body = data[_PREFIX.size + header_bytes : -_CRC.size]
    expected = 2 * sum(step_counts) + model_bytes + 4 * header["words"]
    if len(body) != expected:
        raise _fail(path, f"steps and payload are {len(body)} bytes, the header says {expected}")
    all_steps = (np.frombuffer(body, dtype="<u2", count=sum(step_counts)).astype(np.uint32) << 16).view(np.float32)
    if not np.all(np.isfinite(all_steps) & (all_steps > 0)):
        raise _fail(path, "a quantization step is not a positive finite number")
    if version >= 4:
        pairs = np.frombuffer(body, dtype="<u2", count=2 * model_count, offset=2 * sum(step_counts))
        pairs = [tuple(pair) for pair in pairs.reshape(-1, 2).tolist()]
        top = symmetric_levels(bits)
        tables = {pair: entropy.geometric_counts(*pair, top) for pair in set(pairs)}
        alone = iter(pairs)
        shared = np.stack([tables[pair] for pair in pairs[-CONTEXTS:]]) if any(widths) else None
        models = [(-top, shared if w else tables[next(alone)]) for w in widths]
    else:
        models = [(header["low"], np.asarray(header["counts"], dtype=np.int64))] * len(entries)
    payload = np.frombuffer(body[2 * sum(step_counts) + model_bytes :], dtype="<u4")
    shapes = [tuple(entry["shape"]) for entry in entries]
    coded_shapes = [_coded_shape(shape, w) for shape, w in zip(shapes, widths)]
    coded = entropy.decode(payload, [(shape, low, counts) for shape, (low, counts) in zip(coded_shapes, models)])
    tensors, first_step = [], 0
    for entry, shape, values, count, width in zip(entries, shapes, coded, step_counts, widths):
        steps = all_steps[first_step : first_step + count]
        flat = values.reshape(values.shape[0], -1).T.reshape(-1) if width else values  # planes back to the table
        tensors.append(QuantizedTensor(entry["name"], shape, steps, flat, width))
        first_step += count
    return Bitstream(header["config"], bits, tensors, models, len(data))


def _coded_shape(shape: tuple[int, ...], width: int) -> tuple[int, ...]:
    """The shape a tensor's integers are coded in: flat, or its planes (F, N / W, W) with a context width W."""
    if not width:
        return (math.prod(shape),)
    features = math.prod(shape[1:])
    return (features, shape[0] // width, width)


def check_layout(shapes: dict[str, tuple[int, ...]], needed: dict[str, tuple[int, ...]], where: str, what: str) -> None:
    """Tensor ``shapes`` by name (a file's, or a model's about to be written) must be exactly the
    ``needed`` ones of the model a header describes (``what``, e.g. "the generator"); one sentence
    naming ``where`` otherwise. Called with that model laid out on the meta device, before allocating."""
    if set(shapes) != set(needed):
        extra, missing = sorted(set(shapes) - set(needed)), sorted(set(needed) - set(shapes))
        raise CamfieldsError(
            f"{where}: its tensors do not match {what} its header describes "
            f"(unexpected: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'})"
        )
    for name, shape in needed.items():
        if shapes[name] != shape:
            raise CamfieldsError(f"{where}: tensor {name} has shape {shapes[name]}, {what} needs {shape}")
