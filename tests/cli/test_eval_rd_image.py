"""``camfields eval-rd --task image``: the image codec's rate-distortion against the Pillow codecs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_image_baselines import smooth_image

from camfields.__main__ import main
from camfields.codec import image_baselines
from camfields.io.images import save_png

#: a field of a few hundred parameters, fitted in a few steps on the whole image; its encoding
#: stores no random projection (whose 16-bit levels make the entropy coder's tables slow)
TINY = """
downscale = 1
[field.encoding]
kind = "sinusoidal"
num_freqs = 3
[models.cam.field.modulation]
resolution = [4, 4]
[train]
steps = 15
batch_size = 384
checkpoint_every = 15
"""
SIZES = (150, 300, 600)


def exit_code(argv: list[str]) -> int:
    """The status ``camfields ARGV`` ends with (argparse exits for its own errors)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def tiny_folder(tmp_path: Path) -> Path:
    """Two 24x16 RGB PNGs in tmp_path/images."""
    folder = tmp_path / "images"
    save_png(folder / "a.png", smooth_image(16, 24))
    save_png(folder / "b.png", smooth_image(16, 24).flip(1))
    return folder


def eval_rd(tmp_path: Path, *options: str) -> int:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    base = ["eval-rd", "--task", "image", "--config", str(config), "--device", "cpu", "--quiet"]
    return exit_code([*base, *options, "--out", str(tmp_path / "rd")])


@pytest.mark.slow
def test_eval_rd_image_end_to_end_with_every_baseline(tmp_path, capsys):
    folder = tiny_folder(tmp_path)
    sizes = ",".join(map(str, SIZES))
    assert eval_rd(tmp_path, "--images", str(folder), "--params", sizes, "--bits", "6,8") == 0
    report = json.loads((tmp_path / "rd" / "rd.json").read_text())
    codecs = [c for c in image_baselines.CODECS if image_baselines.available(c)]
    names = [c["name"] for c in report["codecs"]]
    ours = [f"camfields-{m}-{b}bit" for m in ("cam", "ffn") for b in (6, 8)]
    assert names == ours + codecs and report["count"] == 2 and report["task"] == "image"
    assert report["sizes"] == {"a": [24, 16], "b": [24, 16]}
    for c in report["codecs"]:
        results = c["results"]
        assert set(results) == {"bpp", "psnr", "ms_ssim"} and results["bpp"] == sorted(results["bpp"])
        for point, bpp, value in zip(c["points"], results["bpp"], results["psnr"]):
            assert set(point["images"]) == {"a", "b"}
            assert bpp == pytest.approx(sum(i["bpp"] for i in point["images"].values()) / 2)
            assert value == pytest.approx(sum(i["psnr"] for i in point["images"].values()) / 2)
    for c in report["codecs"][:4]:
        model, bits = c["name"].split("-")[1], int(c["name"].split("-")[2][:-3])
        assert len(c["points"]) == len(SIZES) and {p["bits"] for p in c["points"]} == {bits}
        for point in c["points"]:
            assert point["params"] <= point["target_params"]
            for stem, measured in point["images"].items():
                file = tmp_path / "rd" / f"{model}_{point['target_params']}" / stem / f"image_{bits}bit.camf"
                assert measured["bytes"] == file.stat().st_size  # bpp from the file written
                assert measured["bpp"] == 8 * file.stat().st_size / (24 * 16)
    jpeg = next(c for c in report["codecs"] if c["name"] == "jpeg")
    quality = jpeg["points"][0]["quality"]
    size = len(image_baselines.encode(smooth_image(16, 24), "jpeg", quality))
    assert jpeg["points"][0]["images"]["a"]["bytes"] == size
    bd = report["bd"]
    assert set(bd) == {f"{o} vs {c}" for o in ours for c in codecs} | {
        f"camfields-cam-{b}bit vs camfields-ffn-{b}bit" for b in (6, 8)
    }
    for value in bd.values():
        assert value.get("error") or (math.isfinite(value["bd_rate_percent"]) and math.isfinite(value["bd_psnr_db"]))
    assert len(report["same_rate"]) == 4 * len(SIZES)
    assert (tmp_path / "rd" / "rd.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out

    # a rerun reuses the finished fits (not refitted: the same checkpoints) and re-encodes them
    checkpoint = tmp_path / "rd" / "cam_150" / "a" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    assert eval_rd(tmp_path, "--images", str(folder), "--params", sizes, "--bits", "6,8") == 0
    assert checkpoint.stat().st_mtime_ns == before
    assert json.loads((tmp_path / "rd" / "rd.json").read_text())["codecs"][:4] == report["codecs"][:4]
    # other settings in the same --out are refused, not reused silently
    capsys.readouterr()
    assert eval_rd(tmp_path, "--images", str(folder), "--params", "150", "--steps", "20", "--codecs", "") == 2
    assert "fitted with a different config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--codecs", "jpeg,png"), "unknown --codecs name 'png'"),
        (("--bits", "6,1"), "--bits must be from 2 to 16, got 1"),
        (("--bits", "six"), "expected comma-separated integers, got 'six'"),
        (("--models", "cam,nerv"), "nerv"),
        (("--params", "10"), "--params 10 is below the smallest cam field of this config"),
        (("--crf", "30"), "--task image takes no --crf"),
        (("--qat", "1.5"), "--qat must be a fraction of the steps in [0, 1], got 1.5"),
    ],
)
def test_eval_rd_image_bad_options_are_one_sentence_before_anything_is_written(tmp_path, capsys, options, message):
    assert eval_rd(tmp_path, "--images", str(tiny_folder(tmp_path)), *options) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rd").exists()


def test_eval_rd_image_needs_images_and_refuses_empty_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert eval_rd(tmp_path, "--images", str(tmp_path / "empty")) == 2
    assert f"folder {tmp_path / 'empty'} holds no images" in capsys.readouterr().err
    assert eval_rd(tmp_path) == 2
    assert "--task image needs --images" in capsys.readouterr().err
    assert exit_code(["eval-rd", "--images", str(tmp_path), "--out", str(tmp_path / "rd")]) == 2
    assert "--task video takes no --images" in capsys.readouterr().err
    assert not (tmp_path / "rd").exists()


@pytest.mark.slow
def test_with_qat_each_bit_depth_is_fitted_through_its_own_quantizer(tmp_path):
    import torch

    from camfields.commands.eval_rd_image import Point, fit_folder, fit_key
    from camfields.training.checkpoint import read_json

    assert fit_key(Point("cam", 300, 6)) == fit_key(Point("cam", 300, 8))  # post-training: one fit
    assert fit_folder(fit_key(Point("cam", 300, 6), qat=True)) == "cam_300_qat6bit"
    folder = tiny_folder(tmp_path)
    assert eval_rd(tmp_path, "--images", str(folder), "--params", "300", "--bits", "4,8", "--qat", "0.5") == 0
    for bits in (4, 8):
        run = tmp_path / "rd" / f"cam_300_qat{bits}bit" / "a"
        recorded = read_json(run / "config.json")["compression"]
        assert (recorded["bits"], recorded["qat_fraction"]) == (bits, 0.5)
        assert (run / f"image_{bits}bit.camf").is_file() and not (run / f"image_{12 - bits}bit.camf").exists()
    four = torch.load(tmp_path / "rd" / "cam_300_qat4bit" / "a" / "checkpoint.pt", weights_only=True)["model"]
    eight = torch.load(tmp_path / "rd" / "cam_300_qat8bit" / "a" / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(four[k], eight[k]) for k in four)  # trained through different quantizers
    report = json.loads((tmp_path / "rd" / "rd.json").read_text())
    assert report["qat_fraction"] == 0.5 and "QAT" in report["codecs"][0]["description"]


PYRAMID = """
downscale = 1
[train]
steps = 12
batch_size = 384
checkpoint_every = 12
"""


@pytest.mark.slow
def test_rate_weights_sweep_the_pyramid_codecs_through_their_quantizer(tmp_path, capsys):
    from camfields.training.checkpoint import read_json

    folder = tiny_folder(tmp_path)
    config = tmp_path / "pyramid.toml"
    config.write_text(PYRAMID)
    base = ["eval-rd", "--task", "image", "--images", str(folder), "--config", str(config), "--device", "cpu"]
    argv = [*base, "--quiet", "--models", "pyramid,pyramid_cam", "--rate-weights", "0.001,0.01,0.1", "--bits", "6"]
    assert exit_code([*argv, "--codecs", "jpeg", "--out", str(tmp_path / "rd")]) == 0
    report = json.loads((tmp_path / "rd" / "rd.json").read_text())
    assert report["rate_weights"] == [0.001, 0.01, 0.1]
    curves = {c["name"]: c for c in report["codecs"]}
    for model in ("pyramid", "pyramid_cam"):
        points = {p["rate_weight"]: p for p in curves[f"camfields-{model}-6bit"]["points"]}
        assert sorted(points) == [0.001, 0.01, 0.1] and all(p["bits"] == 6 for p in points.values())
        for weight in (0.001, 0.01, 0.1):
            run = tmp_path / "rd" / f"{model}_rate{weight:g}_qat6bit" / "a"
            recorded = read_json(run / "config.json")
            assert recorded["compression"]["rate_weight"] == weight and recorded["compression"]["qat_fraction"] == 0.8
            assert recorded["compression"]["step_gradient"]
            assert recorded["field"]["encoding"]["pyramid"]["resolution"] == [24, 16]
            assert (run / "image_6bit.camf").is_file()
        assert points[0.001]["bpp"] > points[0.1]["bpp"]  # a heavier rate term, a smaller file
    assert "rate weights 0.001,0.01,0.1" in curves["camfields-pyramid-6bit"]["description"]
    assert {row["rate_weight"] for row in report["same_rate"]} == {0.001, 0.01, 0.1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--rate-weights", "0.01,x"), "--rate-weights takes comma-separated numbers, got '0.01,x'"),
        (("--rate-weights", "-1"), "--rate-weights takes comma-separated numbers >= 0, got '-1'"),
        (("--rate-weights", "0.01", "--params", "300"), "--rate-weights replaces --params"),
        (("--rate-weights", "0.01", "--models", "cam"), "cam's config has compression.qat_fraction = 0; pass --qat"),
    ],
)
def test_rate_weight_options_are_one_sentence_before_anything_is_written(tmp_path, capsys, options, message):
    assert eval_rd(tmp_path, "--images", str(tiny_folder(tmp_path)), *options) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rd").exists()
