"""What every rate-distortion evaluation reports (``camfields eval-rd``, video and image tasks).

A curve is CompressAI-style: ``{"name", "description", "results": {"bpp": [...], "psnr": [...],
"ms_ssim": [...]}, "points": [...]}`` with its points sorted by bpp. From curves this module
makes the BD-rate / BD-PSNR table of given (test, reference) pairs, the table of each camfields
point against every baseline at the same bpp, the RD plot (PSNR vs bpp, log rate) and the
printed summary.

Example::

    >>> a = curve("a", "codec a", [{"bpp": b, "psnr": 20 + 10 * b, "ms_ssim": 0.9} for b in (0.5, 1, 2)])
    >>> b = curve("b", "codec b", [{"bpp": b, "psnr": 21 + 10 * b, "ms_ssim": 0.9} for b in (0.5, 1, 2)])
    >>> round(bd_table([a, b], [("b", "a")])["b vs a"]["bd_psnr_db"], 6)
    1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camfields.codec.rd import bd_psnr, bd_rate, psnr_at_rate
from camfields.errors import CamfieldsError

#: the per-point measures a curve lists in its ``results``
MEASURES = ("bpp", "psnr", "ms_ssim")


def curve(name: str, description: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    """A CompressAI-style curve of ``points`` (each with at least ``MEASURES``), sorted by bpp."""
    points = sorted(points, key=lambda p: p["bpp"])
    return {
        "name": name,
        "description": description,
        "results": {key: [p[key] for p in points] for key in MEASURES},
        "points": points,
    }


def bd_table(curves: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """``"test vs ref"``: BD-rate (%) and BD-PSNR (dB) of the test curve against the reference curve
    for each (test, ref) name pair, or ``{"error": why}`` where they are undefined (too few
    points, no overlap)."""
    by_name = {c["name"]: c["results"] for c in curves}
    bd: dict[str, dict[str, Any]] = {}
    for ours, ref in pairs:
        r, t = by_name[ref], by_name[ours]
        try:
            bd[f"{ours} vs {ref}"] = {
                "bd_rate_percent": bd_rate(r["bpp"], r["psnr"], t["bpp"], t["psnr"]),
                "bd_psnr_db": bd_psnr(r["bpp"], r["psnr"], t["bpp"], t["psnr"]),
            }
        except CamfieldsError as e:
            bd[f"{ours} vs {ref}"] = {"error": str(e)}
    return bd


def same_rate_table(curves: list[dict[str, Any]], ours: list[str], size_key: str) -> list[dict[str, Any]]:
    """Every point of the curves named in ``ours`` (its ``size_key``, bpp and PSNR) with the PSNR of
    every other curve not in ``ours`` read at its bpp (None outside that curve's range)."""
    by_name = {c["name"]: c for c in curves}
    baselines = [c for c in curves if c["name"] not in ours]
    return [
        {
            "curve": name,
            size_key: point[size_key],
            "bpp": point["bpp"],
            "psnr": point["psnr"],
            "baseline_psnr_at_same_bpp": {
                ref["name"]: psnr_at_rate(ref["results"]["bpp"], ref["results"]["psnr"], point["bpp"])
                for ref in baselines
            },
        }
        for name in ours
        for point in by_name[name]["points"]
    ]


def plot(curves: list[dict[str, Any]], path: Path, title: str) -> None:
    """Write the RD plot of ``curves`` (PSNR vs bpp, log rate) to the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for c in curves:
        ax.plot(c["results"]["bpp"], c["results"]["psnr"], marker="o", label=c["name"])
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB, 8-bit RGB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_summary(
    curves: list[dict[str, Any]],
    same_rate: list[dict[str, Any]],
    size_key: str,
    bd: dict[str, dict[str, Any]],
    notes: list[str],
    name_width: int = 16,
    point_width: int = 32,
) -> None:
    """Print every curve's (bpp, PSNR) pairs, the same-rate table (a camfields point by its
    ``size_key`` against each baseline), the BD table and the notes."""
    for c in curves:
        pairs = ", ".join(f"{b:.4f} bpp {p:.2f} dB" for b, p in zip(c["results"]["bpp"], c["results"]["psnr"]))
        print(f"{c['name']:<{name_width}} {pairs}")
    refs = list(same_rate[0]["baseline_psnr_at_same_bpp"]) if same_rate else []
    print(f"{'camfields point':<{point_width}} {'bpp':>7} {'PSNR':>6}" + "".join(f" {ref:>6}" for ref in refs))
    for row in same_rate:
        others = "".join(
            f" {'-':>6}" if psnr is None else f" {psnr:6.2f}" for psnr in row["baseline_psnr_at_same_bpp"].values()
        )
        label = f"{row['curve']} {row[size_key]}"
        print(f"{label:<{point_width}} {row['bpp']:7.4f} {row['psnr']:6.2f}{others}")
    for name, value in bd.items():
        print(f"{name}: {value}")
    for note in notes:
        print(f"note: {note}")
