"""Rate-distortion comparison: Bjontegaard delta rate and delta PSNR between two RD curves.

Both follow Bjontegaard (VCEG-M33): fit a cubic polynomial through each curve in the
(log rate, PSNR) plane, integrate over the overlapping interval, and compare. A curve of
three points gets the quadratic through them instead (the cubic needs four). BD-rate is the
average rate change (in %) of the test curve at equal quality (negative: the test codec
needs fewer bits); BD-PSNR the average quality change (dB) at equal rate. ``psnr_at_rate``
reads one curve at one rate, for point-by-point comparisons.
"""

from __future__ import annotations

import numpy as np

from camfields.errors import CamfieldsError


def _check(rates: list[float], psnrs: list[float], which: str, least: int = 3) -> tuple[np.ndarray, np.ndarray]:
    r, p = np.asarray(rates, dtype=np.float64), np.asarray(psnrs, dtype=np.float64)
    if r.shape != p.shape or r.ndim != 1 or len(r) < least:
        raise CamfieldsError(f"{which} curve needs at least {least} (rate, PSNR) points of equal count, got {len(r)}")
    if (r <= 0).any() or not np.isfinite(p).all():
        raise CamfieldsError(f"{which} curve needs positive rates and finite PSNRs")
    if len(np.unique(r)) < least or len(np.unique(p)) < least:
        raise CamfieldsError(f"{which} curve needs at least {least} distinct rates and PSNRs, got {len(np.unique(r))}")
    order = np.argsort(r)
    return r[order], p[order]


def _integral(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    poly = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
    return float(np.polyval(poly, high) - np.polyval(poly, low))


def bd_rate(ref_rates, ref_psnrs, test_rates, test_psnrs) -> float:
    """Average rate difference (%) of the test curve against the reference at equal PSNR."""
    r1, p1 = _check(ref_rates, ref_psnrs, "reference")
    r2, p2 = _check(test_rates, test_psnrs, "test")
    low, high = max(p1.min(), p2.min()), min(p1.max(), p2.max())
    if low >= high:
        raise CamfieldsError("the two RD curves do not overlap in PSNR; BD-rate is undefined")
    diff = (_integral(p2, np.log(r2), low, high) - _integral(p1, np.log(r1), low, high)) / (high - low)
    return float((np.exp(diff) - 1.0) * 100.0)


def bd_psnr(ref_rates, ref_psnrs, test_rates, test_psnrs) -> float:
    """Average PSNR difference (dB) of the test curve against the reference at equal rate."""
    r1, p1 = _check(ref_rates, ref_psnrs, "reference")
    r2, p2 = _check(test_rates, test_psnrs, "test")
    l1, l2 = np.log(r1), np.log(r2)
    low, high = max(l1.min(), l2.min()), min(l1.max(), l2.max())
    if low >= high:
        raise CamfieldsError("the two RD curves do not overlap in rate; BD-PSNR is undefined")
    return float((_integral(l2, p2, low, high) - _integral(l1, p1, low, high)) / (high - low))


def psnr_at_rate(rates: list[float], psnrs: list[float], rate: float) -> float | None:
    """PSNR of a curve at ``rate``, linear in log rate between its two nearest points.

    None when ``rate`` lies outside the curve's range (no extrapolation).
    """
    r, p = _check(rates, psnrs, "reference", least=1)
    if not r[0] <= rate <= r[-1]:
        return None
    return float(np.interp(np.log(rate), np.log(r), p))
