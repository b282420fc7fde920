"""The shared rate-distortion report (``codec.rd_report``): curves, BD table, same-rate table."""

from __future__ import annotations

import doctest

import pytest

from camfields.codec import rd_report
from camfields.codec.rd import bd_rate
from camfields.codec.rd_report import bd_table, curve, same_rate_table
from camfields.errors import CamfieldsError


def line(name: str, offset: float, rates=(0.25, 0.5, 1.0, 2.0)) -> dict:
    return curve(name, name, [{"bpp": r, "psnr": 25 + 3 * r + offset, "ms_ssim": 0.9, "params": 10} for r in rates])


def test_curves_bd_pairs_and_same_rate_rows():
    ours, ref, far = line("ours", 1.0), line("ref", 0.0), line("far", 0.0, rates=(8.0, 9.0, 10.0))
    assert ours["results"]["bpp"] == [0.25, 0.5, 1.0, 2.0]
    bd = bd_table([ours, ref, far], [("ours", "ref"), ("ours", "far")])
    assert bd["ours vs ref"]["bd_psnr_db"] == pytest.approx(1.0) and bd["ours vs ref"]["bd_rate_percent"] < 0
    assert "do not overlap" in bd["ours vs far"]["error"]
    rows = same_rate_table([ours, ref, far], ["ours"], "params")
    assert [row["bpp"] for row in rows] == [0.25, 0.5, 1.0, 2.0]
    assert rows[1]["baseline_psnr_at_same_bpp"] == {"ref": pytest.approx(26.5), "far": None}


def test_a_curve_of_repeated_rates_has_no_bd_rate():
    # a codec whose sweep ends at one file size (e.g. JPEG 2000 at its header's size on a tiny image)
    with pytest.raises(CamfieldsError, match="at least 3 distinct rates and PSNRs"):
        bd_rate([0.5, 1, 2], [30, 32, 34], [3.7, 3.7, 3.7], [10.6, 10.6, 10.6])


def test_the_module_example_runs():
    assert doctest.testmod(rd_report).failed == 0
