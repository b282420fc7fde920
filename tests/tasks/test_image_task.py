"""The image task: file formats, bad inputs, folders, outputs, resume and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO

from camfields import CamfieldsError
from camfields.io.images import list_images, load_image, pixel_coords
from camfields.tasks.image import fit_images, resolve_config, training_mask

TINY = {"field": {"hidden": 16, "encoding": {"num_features": 8}}, "train": {"steps": 4, "checkpoint_every": 2}}


def write(path, array):
    iio.imwrite(path, array)
    return path


@pytest.mark.parametrize(
    "array,channels,bits",
    [
        (np.array([[[0, 128, 255]]], dtype=np.uint8), 3, 8),
        (np.array([[0, 65535], [32768, 1]], dtype=np.uint16), 1, 16),
        (np.array([[[10, 20, 30, 255]]], dtype=np.uint8), 4, 8),
        (np.array([[7, 250]], dtype=np.uint8), 1, 8),
    ],
)
def test_images_of_every_depth_and_channel_count_load_to_unit_floats(tmp_path, array, channels, bits):
    image = load_image(write(tmp_path / "x.png", array))
    assert image.pixels.shape[2] == channels and image.bits == bits
    expected = array.astype(np.float64) / np.iinfo(array.dtype).max
    np.testing.assert_allclose(image.pixels.numpy(), expected.reshape(image.pixels.shape), rtol=1e-6)


def test_bad_image_files_are_clear_errors(tmp_path):
    with pytest.raises(CamfieldsError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CamfieldsError, match=r"empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not a png at all" * 10)
    with pytest.raises(CamfieldsError, match="could not read image"):
        load_image(tmp_path / "garbage.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hi")
    with pytest.raises(CamfieldsError, match="holds no images"):
        list_images(tmp_path / "folder")


def test_pixel_coordinates_are_pixel_centres():
    coords = pixel_coords(4, 8)
    assert coords.shape == (32, 2)
    torch.testing.assert_close(coords[0], torch.tensor([-1 + 1 / 8, -1 + 1 / 4]))
    torch.testing.assert_close(coords[-1], torch.tensor([1 - 1 / 8, 1 - 1 / 4]))
    torch.testing.assert_close(coords[1] - coords[0], torch.tensor([2 / 8, 0.0]))
    mask = training_mask(5, 4, "generalization").reshape(5, 4)
    assert mask.sum() == 3 * 2 and mask[0, 0] and mask[2, 2] and not mask[1, 0] and not mask[0, 1]
    assert training_mask(5, 4, "regression").all()


def test_folder_fit_writes_per_image_and_mean_metrics_and_resume_keeps_them(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write(folder / "a.png", rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    write(folder / "b.png", rng.integers(0, 65535, (16, 12), dtype=np.uint16))
    cfg = resolve_config("cam", overrides={**TINY, "mode": "generalization"})
    summary = fit_images(folder, cfg, tmp_path / "out", device="cpu", progress=False)
    assert summary["count"] == 2 and set(summary["images"]) == {"a", "b"}
    psnrs = [summary["images"][k]["psnr"] for k in ("a", "b")]
    assert summary["mean"]["psnr"] == pytest.approx(sum(psnrs) / 2)
    assert all("psnr_heldout" in m for m in summary["images"].values())
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["mean"]["psnr"] == pytest.approx(summary["mean"]["psnr"])
    recon_b = iio.imread(tmp_path / "out" / "b" / "reconstruction.png")
    assert recon_b.shape == (16, 12) and recon_b.dtype == np.uint16
    assert list((tmp_path / "out" / "a" / "tb").iterdir()), "no TensorBoard events"
    mtime = (tmp_path / "out" / "a" / "metrics.json").stat().st_mtime_ns
    again = fit_images(folder, cfg, tmp_path / "out", device="cpu", resume=True, progress=False)
    assert again["images"]["a"]["psnr"] == pytest.approx(psnrs[0])
    assert (tmp_path / "out" / "a" / "metrics.json").stat().st_mtime_ns == mtime


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit_image.py"), "--quiet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(proc, pattern):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") or "error:" in last
    import re

    assert re.search(pattern, proc.stderr), proc.stderr


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        "[field]\nhidden = 16\n[field.encoding]\nnum_features = 8\n[train]\nsteps = 4\ncheckpoint_every = 2\n"
    )
    return path


@pytest.mark.slow
def test_cli_fits_an_image_and_writes_every_output(tmp_path, tiny_config):
    image = write(tmp_path / "img.png", np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    proc = run_cli("--image", str(image), "--config", str(tiny_config), "--out", str(tmp_path / "o"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    for key in ("psnr", "ssim", "lpips", "params", "steps", "seconds", "device"):
        assert key in metrics
    assert metrics["steps"] == 4 and metrics["params"] > 0 and metrics["lpips"] != 0
    assert iio.imread(tmp_path / "o" / "reconstruction.png").shape == (20, 24, 3)
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["field"]["hidden"] == 16 and config["model"] == "cam"


@pytest.mark.slow
def test_cli_bad_inputs_end_in_one_sentence_and_destroy_nothing(tmp_path, tiny_config):
    image = write(tmp_path / "img.png", np.random.default_rng(1).integers(0, 255, (10, 10, 3), dtype=np.uint8))
    out = str(tmp_path / "o")
    assert_one_line_error(run_cli("--image", str(tmp_path / "nope.png"), "--out", out), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("--image", str(tmp_path / "empty"), "--out", out), "holds no images")
    assert_one_line_error(run_cli("--model", "siren", "--out", out), "invalid choice")
    assert_one_line_error(run_cli("--mode", "memorize", "--out", out), "invalid choice")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nstpes = 3\n")
    assert_one_line_error(run_cli("--config", str(bad), "--out", out), "unknown config key 'train.stpes'")

    ok = run_cli("--image", str(image), "--config", str(tiny_config), "--out", out, "--device", "cpu")
    assert ok.returncode == 0, ok.stderr
    files = [p for p in (tmp_path / "o").iterdir() if p.is_file() and p.name != ".lock"]  # .lock: the last pid
    snapshot = {p.name: p.read_bytes() for p in files}
    assert_one_line_error(
        run_cli("--image", str(image), "--config", str(tiny_config), "--out", out), "already holds a fit"
    )
    assert_one_line_error(
        run_cli("--image", str(image), "--config", str(tiny_config), "--out", out, "--resume", "--model", "ffn"),
        r"different config \(.*model",
    )
    ckpt = tmp_path / "o" / "checkpoint.pt"
    ckpt.write_bytes(snapshot["checkpoint.pt"][:100])
    assert_one_line_error(
        run_cli("--image", str(image), "--config", str(tiny_config), "--out", out, "--resume", "--device", "cpu"),
        "truncated or corrupt",
    )
    assert ckpt.read_bytes() == snapshot["checkpoint.pt"][:100]
    for name, data in snapshot.items():
        if name != "checkpoint.pt":
            assert (tmp_path / "o" / name).read_bytes() == data, name
