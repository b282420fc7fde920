"""Entropy coding of quantized integers with constriction's range coder.

A model is a histogram: the smallest symbol ``low`` and integer counts (K,) of the symbols
``low .. low + K - 1``. The coder codes segments of symbols, each under its own model, into
one stream of words. A segment whose counts have two dimensions (C, K), one model per context
of ``compression.context``, holds planes (P, rows, width) of latents: each symbol, in raster
order, is coded under the model of its causal context, which the decoder computes from the
symbols it has already decoded. Models are integers that the bitstream carries (a histogram) or that
both sides compute with integer arithmetic alone (``geometric_counts``), so the encoder and
the decoder build exactly the same probability tables on every platform.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np
import torch

from camfields.compression.context import CONTEXT_OF_ACTIVITY, context_indices
from camfields.errors import CamfieldsError

#: a model's tail ratio is theta / THETA_ONE and its count at 1 TAIL_COUNT; its count at 0 is
#: zero * ZERO_UNIT (theta and zero are 16-bit integers)
THETA_ONE = 1 << 16
TAIL_COUNT = 1 << 24
ZERO_UNIT = 1 << 16

#: a segment to encode: (symbols, low, counts); to decode: (its shape, low, counts). Counts (K,)
#: code the symbols (any shape) under one model; counts (CONTEXTS, K) code planes (P, rows, width)
#: under the model of each symbol's context
Segment = tuple[np.ndarray, int, np.ndarray]
SegmentShape = tuple[tuple[int, ...], int, np.ndarray]


def histogram(symbols: np.ndarray) -> tuple[int, np.ndarray]:
    """(smallest symbol, counts (K,) int64 of every symbol from it to the largest)."""
    if symbols.size == 0:
        return 0, np.zeros(1, dtype=np.int64)
    low = int(symbols.min())
    return low, np.bincount(symbols.astype(np.int64) - low).astype(np.int64)


def geometric_tails(thetas: np.ndarray, levels: int) -> np.ndarray:
    """Counts (len(thetas), levels) int64 of the symbols 1 .. levels (and of -1 .. -levels) under
    each theta: TAIL_COUNT at 1, each step out the previous count times theta / THETA_ONE
    rounded down, and at least 1 (every symbol stays codable)."""
    thetas = np.asarray(thetas, dtype=np.int64).reshape(-1)
    if np.any((thetas < 0) | (thetas >= THETA_ONE)) or levels < 0:
        raise CamfieldsError(f"geometric models need 0 <= theta < {THETA_ONE} and levels >= 0")
    tails = np.ones((len(thetas), levels), dtype=np.int64)  # every count reaches 1 and stays there
    previous = np.full(len(thetas), TAIL_COUNT, dtype=np.int64)
    for k in range(levels):
        if not (previous > 1).any():
            break
        tails[:, k] = previous
        previous = np.maximum((previous * thetas) >> 16, 1)
    return tails


def geometric_counts(theta: int, zero: int, levels: int) -> np.ndarray:
    """Counts (2 * levels + 1,) int64 of the symbols -levels .. levels under the model (theta, zero):
    a two-sided geometric distribution (``geometric_tails``) whose count at 0 is set apart, at
    least 1, so that a spike of zeros (pruned weights) costs what it should. Integer arithmetic
    only: the encoder and the decoder build the same table on every platform."""
    if not 0 <= zero < 1 << 16:
        raise CamfieldsError(f"a geometric model's zero count must be in 0 .. 65535, got {zero}")
    tail = geometric_tails(np.array([theta]), levels)[0]
    return np.concatenate([tail[::-1], [max(zero * ZERO_UNIT, 1)], tail])


def best_geometric_model(symbols: np.ndarray, levels: int) -> tuple[int, int]:
    """The (theta, zero) whose model over -levels .. levels codes ``symbols`` in the fewest bits:
    theta by a coarse-to-fine search (the bits are nearly convex in it), for each theta the
    zero count nearest the one that gives 0 its frequency in ``symbols``."""
    magnitudes = np.abs(symbols.reshape(-1).astype(np.int64))
    tallies = np.bincount(magnitudes, minlength=levels + 1)  # of 0, |1|, ..., |levels|
    zeros, total = int(tallies[0]), int(magnitudes.size)

    def bits_and_zero(thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tails = geometric_tails(thetas, levels)
        tail_total = 2 * tails.sum(axis=1).astype(np.float64)
        ideal = tail_total * zeros / max(total - zeros, 1) / ZERO_UNIT if zeros < total else np.full(len(thetas), 1e9)
        choices = np.clip(np.floor(ideal)[:, None] + np.arange(2), 0, (1 << 16) - 1)  # the two around the ideal
        zero_counts = np.maximum(choices * ZERO_UNIT, 1)
        spent = -(tallies[1:] * np.log2(tails)).sum(axis=1)[:, None] - zeros * np.log2(zero_counts)
        spent = spent + total * np.log2(zero_counts + tail_total[:, None])
        pick = np.argmin(spent, axis=1)
        rows = np.arange(len(thetas))
        return spent[rows, pick], choices[rows, pick].astype(np.int64)

    spacing = THETA_ONE // 64
    candidates = np.arange(0, THETA_ONE, spacing)
    while True:
        bits, zero_choices = bits_and_zero(candidates)
        best = int(np.argmin(bits))
        if spacing == 1:
            return int(candidates[best]), int(zero_choices[best])
        center, spacing = int(candidates[best]), max(spacing // 16, 1)
        candidates = np.arange(max(center - 16 * spacing, 0), min(center + 16 * spacing, THETA_ONE - 1) + 1, spacing)


def cross_entropy_bits(tallies: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bits of coding symbols tallied in ``tallies`` (K,) under each model of ``counts`` (..., K);
    infinite where a tallied symbol has count 0."""
    probabilities = counts / counts.sum(axis=-1, keepdims=True)
    return -(tallies * np.log2(np.where(tallies > 0, probabilities, 1.0))).sum(axis=-1)


def _model(counts: np.ndarray):
    total = counts.sum()
    if total <= 0:
        raise CamfieldsError("the symbol histogram is empty")
    return constriction.stream.model.Categorical(counts.astype(np.float64) / total, perfect=False)


def _needs_coding(count: int, counts: np.ndarray) -> bool:
    """A segment under a one-symbol model is implied by the model and costs no bits."""
    return count > 0 and len(counts) > 1


def contexts_of(planes: np.ndarray) -> np.ndarray:
    """The context (int64, same shape) of every symbol of integer ``planes`` (P, rows, width)."""
    return context_indices(torch.from_numpy(np.ascontiguousarray(planes, dtype=np.int64))).numpy()


def _check_range(offsets: np.ndarray, low: int, size: int) -> None:
    if offsets.size and (offsets.min() < 0 or offsets.max() >= size):
        raise CamfieldsError(f"a symbol lies outside its model's range {low} .. {low + size - 1}")


def encode(segments: Sequence[Segment]) -> np.ndarray:
    """Range-code every segment's integer symbols under its model or models, in order: uint32 words."""
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, low, counts in segments:
        offsets = symbols.astype(np.int64) - low
        _check_range(offsets, low, counts.shape[-1])
        if not _needs_coding(offsets.size, counts[-1] if counts.ndim == 2 else counts):
            continue
        if counts.ndim == 1:
            encoder.encode(offsets.reshape(-1).astype(np.int32), _model(counts))
            continue
        models = [_model(row) for row in counts]
        for offset, context in zip(offsets.reshape(-1).tolist(), contexts_of(symbols).reshape(-1).tolist()):
            encoder.encode(offset, models[context])
    return encoder.get_compressed()


def _decode_planes(decoder, counts: np.ndarray, shape: tuple[int, ...], low: int) -> np.ndarray:
    """Planes (P, rows, width) decoded symbol by symbol, each under the model of the context
    ``compression.context.context_indices`` gives it, computed from the symbols before it."""
    models = [_model(row) for row in counts]
    planes, rows, width = shape
    context_of, top = CONTEXT_OF_ACTIVITY, len(CONTEXT_OF_ACTIVITY) - 1
    out: list[int] = []
    for _ in range(planes):
        above2 = above = [0] * (width + 3)  # |symbol| of column c at c + 2, zeros around
        for _ in range(rows):
            row = [0] * (width + 3)
            for c in range(width):
                a = 2 * row[c + 1] + 2 * above[c + 2] + above[c + 1] + above[c + 3] + row[c] + above2[c + 2]
                value = decoder.decode(models[context_of[a if a < top else top]]) + low
                out.append(value)
                row[c + 2] = value if value >= 0 else -value
            above2, above = above, row
    return np.asarray(out, dtype=np.int64).reshape(shape)


def decode(words: np.ndarray, segments: Sequence[SegmentShape]) -> list[np.ndarray]:
    """The symbols (int64, each segment's shape) of every segment (shape, low, counts) coded in ``words``."""
    try:
        decoder = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
        out = []
        for shape, low, counts in segments:
            count = int(np.prod(shape))
            if not _needs_coding(count, counts[-1] if counts.ndim == 2 else counts):
                out.append(np.full(shape, low, dtype=np.int64))
            elif counts.ndim == 2:
                out.append(_decode_planes(decoder, counts, shape, low))
            else:
                out.append(decoder.decode(_model(counts), count).astype(np.int64).reshape(shape) + low)
    except CamfieldsError:
        raise
    except Exception as e:  # constriction reports inconsistent data as a generic error
        raise CamfieldsError(f"the coded weights cannot be decoded ({e})") from None
    return out


def estimated_bits(counts: np.ndarray) -> float:
    """Shannon bound (bits) of coding a message with this histogram: an estimate, not a file size."""
    counts = counts[counts > 0].astype(np.float64)
    return float(-(counts * np.log2(counts / counts.sum())).sum())
