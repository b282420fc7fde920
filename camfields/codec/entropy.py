"""Entropy coding of quantized integers with constriction's range coder.

All symbols share one categorical model built from their histogram; the histogram travels
in the bitstream, so the decoder rebuilds exactly the same model.
"""

from __future__ import annotations

import constriction
import numpy as np

from camfields.errors import CamfieldsError


def histogram(symbols: np.ndarray) -> tuple[int, np.ndarray]:
    """(smallest symbol, counts (K,) int64 of every symbol from it to the largest)."""
    if symbols.size == 0:
        return 0, np.zeros(1, dtype=np.int64)
    low = int(symbols.min())
    return low, np.bincount(symbols.astype(np.int64) - low).astype(np.int64)


def _model(counts: np.ndarray):
    total = counts.sum()
    if total <= 0:
        raise CamfieldsError("the symbol histogram is empty")
    return constriction.stream.model.Categorical(counts.astype(np.float64) / total, perfect=False)


def encode(symbols: np.ndarray, low: int, counts: np.ndarray) -> np.ndarray:
    """Range-code integer ``symbols`` (any shape) under the histogram (low, counts): uint32 words."""
    if symbols.size == 0:
        return np.zeros(0, dtype=np.uint32)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode((symbols.reshape(-1) - low).astype(np.int32), _model(counts))
    return encoder.get_compressed()


def decode(words: np.ndarray, count: int, low: int, counts: np.ndarray) -> np.ndarray:
    """The ``count`` symbols (int64) coded in ``words`` under the histogram (low, counts)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        decoder = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
        offsets = decoder.decode(_model(counts), count)
    except Exception as e:  # constriction reports inconsistent data as a generic error
        raise CamfieldsError(f"the coded weights cannot be decoded ({e})") from None
    return offsets.astype(np.int64) + low


def estimated_bits(counts: np.ndarray) -> float:
    """Shannon bound (bits) of coding a message with this histogram: an estimate, not a file size."""
    counts = counts[counts > 0].astype(np.float64)
    return float(-(counts * np.log2(counts / counts.sum())).sum())
