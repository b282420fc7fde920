"""Video: reading clips, the NeRV generators, the codec round trip, a tiny fit and the RD script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO, shared_data

from camfields import CamfieldsError
from camfields.codec.bitstream import read_bitstream
from camfields.codec.video import decode_frames, encode, frame_times
from camfields.compression.quantize import rounding_distance
from camfields.fields import count_parameters
from camfields.io.video import read_video
from camfields.modules.nerv import FrameGrids, GeneratorConfig, NeRVGenerator, build_generator
from camfields.tasks.video import VideoConfig, fit_video, quality, resolve_config
from camfields.tasks.video.budget import FitCost, plan_epochs, probe_fit
from camfields.tasks.video.model import VideoModel
from camfields.tasks.video.sizing import one_wider, size_for_params

SMALL = {"strides": [2, 2], "channels": 16, "stem_channels": 8, "stem_hidden": 32, "embedding_levels": 16}


def synthetic_clip(frames: int = 8, size: int = 32) -> np.ndarray:
    """A moving colour gradient with a bright square sliding across: (T, S, S, 3) uint8."""
    y, x = np.mgrid[0:size, 0:size] / size
    clip = []
    for k in range(frames):
        t = k / frames
        frame = np.stack([x, y, 0.5 + 0.5 * np.sin(2 * np.pi * (x + t))], axis=-1)
        left = int(t * (size - 8))
        frame[8:16, left : left + 8] = 1.0
        clip.append((frame * 255).round().astype(np.uint8))
    return np.stack(clip)


def write_frames_folder(root, clip: np.ndarray):
    root.mkdir()
    for k, frame in enumerate(clip):
        iio.imwrite(root / f"f_{k:03d}.png", frame)
    return root


def test_read_video_from_a_folder_with_range_crop_and_resize(tmp_path):
    clip = synthetic_clip()
    root = write_frames_folder(tmp_path / "clip", clip)
    video = read_video(root)
    assert video.shape == (8, 32, 32, 3)
    torch.testing.assert_close(video[3], torch.from_numpy(clip[3]).float() / 255)
    part = read_video(root, start=1, frames=3, stride=2, crop=(16, 16), size=(8, 8))
    assert part.shape == (3, 8, 8, 3)
    expected = torch.from_numpy(clip[5, 8:24, 8:24]).float().reshape(8, 2, 8, 2, 3).mean(dim=(1, 3)) / 255
    torch.testing.assert_close(part[2], expected)


def test_read_video_errors(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(3))
    with pytest.raises(CamfieldsError, match="does not exist"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(CamfieldsError, match="no frames in the range"):
        read_video(root, start=10)
    with pytest.raises(CamfieldsError, match="larger than"):
        read_video(root, crop=(64, 8))
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(CamfieldsError, match="cannot read video"):
        read_video(tmp_path / "bad.mp4")
    iio.imwrite(root / "f_999.png", np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(CamfieldsError, match="frames of different sizes"):
        read_video(root)


def test_read_video_file():
    video = read_video(shared_data("video/carphone_pristine.mp4"), start=2, frames=4)
    assert video.shape == (4, 144, 176, 3) and 0.1 < video.mean() < 0.9


def test_cam_generator_starts_as_identity_modulation_and_sizes_hit_targets():
    gen = NeRVGenerator(32, 32, [2, 2], channels=16, stem_channels=8, stem_hidden=32, time_grid=5)
    for gamma, beta in gen.modulation(torch.tensor([0.0, 0.3, 1.0])):
        assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))
    with pytest.raises(CamfieldsError, match="not divisible"):
        NeRVGenerator(30, 32, [4, 2])
    target = 60000
    plain = size_for_params(GeneratorConfig(**SMALL), 32, 32, target)
    cam = size_for_params(GeneratorConfig(**SMALL, time_grid=30), 32, 32, target)
    sizes = [count_parameters(build_generator(c, 32, 32)) for c in (plain, cam)]
    assert all(0.9 * target < s <= target for s in sizes), sizes
    assert cam.channels <= plain.channels  # the grid's parameters come out of the convolutions
    for sized in (plain, cam):  # no single width can grow by one channel and stay within the target
        assert one_wider(sized) and all(count_parameters(build_generator(c, 32, 32)) > target for c in one_wider(sized))
    small = size_for_params(GeneratorConfig(**SMALL), 32, 32, 3000)  # every width shrinks, the stem too
    assert 2700 < count_parameters(build_generator(small, 32, 32)) <= 3000 and small.stem_hidden < SMALL["stem_hidden"]
    with pytest.raises(CamfieldsError, match="below the smallest generator"):
        size_for_params(GeneratorConfig(**SMALL), 32, 32, 50)


def test_frame_grids_interpolate_each_level_in_time_and_concatenate_channels():
    torch.manual_seed(0)
    grids = FrameGrids([[3, 2], [5, 1]], 4, 6)  # nodes at t = 0, .5, 1 and at t = 0, .25, ..., 1
    coarse = grids.levels[0].table.view(3, 2, 4, 6)
    fine = grids.levels[1].table.view(5, 1, 4, 6)
    out = grids(torch.tensor([0.5, 0.375]))
    assert out.shape == (2, 3, 4, 6) and grids.out_channels == 3
    torch.testing.assert_close(out[0], torch.cat([coarse[1], fine[2]]))  # on a node of both levels
    torch.testing.assert_close(out[1], torch.cat([0.25 * coarse[0] + 0.75 * coarse[1], 0.5 * (fine[1] + fine[2])]))
    cotangent = torch.randn(1, 3, 4, 6)
    (grids(torch.tensor([0.6])) * cotangent).sum().backward()
    touched = grids.levels[1].table.grad.view(5, -1).abs().sum(1) > 0
    assert touched.tolist() == [False, False, True, True, False]  # only the two nodes around t = 0.6
    with pytest.raises(CamfieldsError, match="frame grid levels"):
        FrameGrids([[4]], 4, 6)
    with pytest.raises(CamfieldsError, match="embedding"):
        NeRVGenerator(32, 32, [2, 2], embedding="fourier")


def test_frame_grid_generator_sizes_scale_the_grid_channels():
    cfg = GeneratorConfig(**SMALL, embedding="grids", frame_grids=[[4, 16], [8, 8]])
    sized = size_for_params(cfg, 32, 32, 20000)
    generator = build_generator(sized, 32, 32)
    assert 0.9 * 20000 < count_parameters(generator) <= 20000
    assert sized.frame_grids[0][0] == 4 and sized.frame_grids[0][1] < 16  # nodes kept, channels shrunk
    assert generator.stem_channels == sum(c for _, c in sized.frame_grids)
    assert generator(torch.tensor([0.0, 1.0])).shape == (2, 3, 32, 32)
    pinned = size_for_params(cfg, 32, 32, 20000, frame_grids=False)  # the grids as set, the convolutions fill the rest
    assert pinned.frame_grids == cfg.frame_grids and pinned.channels < sized.channels
    assert 0.9 * 20000 < count_parameters(build_generator(pinned, 32, 32)) <= 20000
    for filled, grids in ((sized, True), (pinned, False)):  # one more channel anywhere would pass the target
        assert all(count_parameters(build_generator(c, 32, 32)) > 20000 for c in one_wider(filled, grids))
    with pytest.raises(CamfieldsError, match="below the smallest generator"):  # the grids alone hold 8192
        size_for_params(cfg, 32, 32, 7000, frame_grids=False)


def test_a_fit_sized_with_frame_grids_kept_writes_them_as_configured(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(4))
    grids = [[2, 3], [4, 1]]
    overrides = {
        "epochs": 1,
        "target_params": 9000,
        "scale_frame_grids": False,
        "generator": {**SMALL, "frame_grids": grids},
    }
    metrics = fit_video(
        root, resolve_config("ffnerv_cam", overrides=overrides), tmp_path / "run", "cpu", progress=False
    )
    header = read_bitstream(tmp_path / "run" / "video.camf").config["generator"]
    assert header["frame_grids"] == grids and header["channels"] < SMALL["channels"]
    assert 0.9 * 9000 < metrics["params"] <= 9000


@pytest.mark.parametrize("embedding, per_channel", [("mlp", False), ("grids", False), ("grids", True)])
def test_bitstream_decoder_reproduces_the_quantized_generator_bit_for_bit(tmp_path, embedding, per_channel):
    torch.manual_seed(0)
    cfg = GeneratorConfig(**SMALL, time_grid=6, embedding=embedding, frame_grids=[[3, 4], [5, 2]])
    generator = build_generator(cfg, 32, 32)
    with torch.no_grad():
        generator.time_grid.table.normal_(0, 0.1)
    path = tmp_path / "g.camf"
    size = encode(path, generator, cfg, 6, frames=5, per_channel=per_channel)
    assert size == path.stat().st_size
    decoded = decode_frames(path)
    model = VideoModel(generator, bits=6, per_channel=per_channel).eval()
    with torch.no_grad():
        expected = model(frame_times(5), quantized=True).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(decoded, expected, atol=1e-6, rtol=0)  # batching may change the last bit
    stream = read_bitstream(path)
    assert stream.bits == 6 and all(np.abs(t.values).max() <= 31 for t in stream.tensors)
    params = dict(generator.named_parameters())
    for t in stream.tensors:  # one step per output channel of every weight (per tensor for biases)
        assert len(t.steps) == (params[t.name].shape[0] if per_channel and len(t.shape) > 1 else 1), t.name
    # the decoded weights are the quantized weights, bit for bit
    with torch.no_grad():
        quantized = model.quantized_parameters()
    for t in stream.tensors:
        assert torch.equal(torch.from_numpy(t.dequantize()), quantized[t.name]), t.name


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cam", "ffnerv_cam"])
def test_tiny_clip_fits_encodes_and_decodes(tmp_path, model):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip())
    cfg = resolve_config(model, overrides={"epochs": 150, "generator": SMALL, "train": {"lr": 1e-2}})
    metrics = fit_video(root, cfg, tmp_path / "run", "cpu", progress=False)
    # measured when written: 37.0 dB (cam) and 39.2 dB (ffnerv_cam) on the decoded 8-bit frames
    assert metrics["psnr"] > 32, metrics
    assert abs(metrics["psnr"] - metrics["psnr_float"]) < 1.5  # quantization-aware training kept 8 bits close
    # the head's levels were chosen for the clip: never worse than rounding every weight to its nearest level
    assert metrics["psnr"] > metrics["psnr_nearest_rounding"] - 0.05
    path = tmp_path / "run" / "video.camf"
    assert metrics["bpp"] == pytest.approx(8 * path.stat().st_size / (32 * 32 * 8))
    assert 0 < metrics["bpp_entropy_estimate"] < metrics["bpp"]
    frames = decode_frames(path)
    source = read_video(root)
    psnr_decoded = np.mean(
        [float(-10 * torch.log10(torch.mean((torch.round(f * 255) / 255 - s) ** 2))) for f, s in zip(frames, source)]
    )
    assert psnr_decoded == pytest.approx(metrics["psnr"], abs=1e-3)
    # the decode script writes PNGs; a damaged file ends in one line and exit code 2
    out = tmp_path / "frames"
    script = [sys.executable, str(REPO / "scripts" / "decode_video.py")]
    subprocess.run([*script, str(path), "--out", str(out), "--device", "cpu"], check=True, capture_output=True)
    assert len(list(out.glob("*.png"))) == 8
    # --tensors alone reports where the bits go, tensor by tensor, and decodes nothing
    report = subprocess.run([*script, str(path), "--tensors"], check=True, capture_output=True, text=True).stdout
    assert "convs.0.weight" in report and "time_grid.table" in report and "payload estimate" in report
    assert subprocess.run([*script, str(path)], capture_output=True, text=True).returncode == 2  # nothing asked
    damaged = tmp_path / "damaged.camf"
    damaged.write_bytes(path.read_bytes()[:-100])
    done = subprocess.run([*script, str(damaged), "--out", str(tmp_path / "new")], capture_output=True, text=True)
    assert done.returncode == 2 and "not a valid camfields bitstream" in done.stderr
    # frames already there are not overwritten, and a frame rate must be one
    again = subprocess.run([*script, str(path), "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
    assert len(list(out.glob("*.png"))) == 8
    still = subprocess.run(
        [*script, str(path), "--out", str(tmp_path / "v.mp4"), "--fps", "0"], capture_output=True, text=True
    )
    assert still.returncode == 2 and "--fps must be a frame rate of at least 1, got 0" in still.stderr


def eval_rd(tmp_path: Path, frames: int, epochs: int, *options: str) -> subprocess.CompletedProcess:
    """``scripts/eval_rd.py`` on a synthetic clip of ``frames`` frames with SMALL generators, results in tmp_path/rd."""
    root = tmp_path / "clip"
    if not root.exists():
        write_frames_folder(root, synthetic_clip(frames))
    config = tmp_path / "tiny.toml"
    config.write_text(
        f"epochs = {epochs}\n[generator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items())
    )
    script = [sys.executable, str(REPO / "scripts" / "eval_rd.py"), "--video", str(root), "--config", str(config)]
    options = (*options, "--device", "cpu", "--out", str(tmp_path / "rd"))
    return subprocess.run([*script, *options], capture_output=True, text=True)


@pytest.mark.slow
def test_eval_rd_writes_curves_bd_rates_and_a_plot(tmp_path):
    done = eval_rd(
        tmp_path,
        6,
        4,
        "--models",
        "cam",
        "--params",
        "8000,16000,32000,64000",
        "--crf",
        "45,38,31,24",
        "--codecs",
        "x264",
        "--preset",
        "ultrafast",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "rd" / "rd.json").read_text())
    names = [c["name"] for c in report["codecs"]]
    assert names == ["camfields-cam", "x264"]
    for c in report["codecs"]:
        assert len(c["results"]["bpp"]) == 4 and c["results"]["bpp"] == sorted(c["results"]["bpp"])
    bd = report["bd"]["camfields-cam vs x264"]
    assert "error" in bd or math.isfinite(bd["bd_rate_percent"])
    assert (tmp_path / "rd" / "rd.png").stat().st_size > 1000
    # every camfields point read against x264 at its own bpp, None outside x264's range
    x264 = report["codecs"][1]["results"]
    for row, bpp, psnr in zip(report["same_rate"], *(report["codecs"][0]["results"][k] for k in ("bpp", "psnr"))):
        assert (row["curve"], row["bpp"], row["psnr"]) == ("camfields-cam", bpp, psnr)
        inside = x264["bpp"][0] <= bpp <= x264["bpp"][-1]
        assert (row["baseline_psnr_at_same_bpp"]["x264"] is not None) == inside
        if inside:
            assert min(x264["psnr"]) <= row["baseline_psnr_at_same_bpp"]["x264"] <= max(x264["psnr"])
    # rerun in the same --out with other epochs: the finished point is not reused silently
    stale = eval_rd(tmp_path, 6, 4, "--models", "cam", "--params", "8000", "--epochs", "5", "--codecs", "")
    assert stale.returncode == 2 and "fitted with a different config" in stale.stderr, stale.stderr[-2000:]


@pytest.mark.slow
def test_eval_rd_draws_one_curve_per_seed(tmp_path):
    done = eval_rd(tmp_path, 4, 3, "--models", "cam", "--params", "8000,16000", "--seeds", "3,4", "--codecs", "")
    assert done.returncode == 0, done.stderr[-2000:]
    curves = json.loads((tmp_path / "rd" / "rd.json").read_text())["codecs"]
    assert [c["name"] for c in curves] == ["camfields-cam-seed3", "camfields-cam-seed4"]
    for seed, c in zip((3, 4), curves):
        runs = [tmp_path / "rd" / f"cam_{p}_8bit_seed{seed}" for p in (8000, 16000)]
        assert [json.loads((r / "config.json").read_text())["train"]["seed"] for r in runs] == [seed, seed]
        metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
        assert sorted(c["results"]["psnr"]) == sorted(m["psnr"] for m in metrics)
        # every point also carries the float model's PSNR and the PSNR with nearest rounding
        kept = {(m["psnr_float"], m["psnr_nearest_rounding"]) for m in metrics}
        assert {(p["psnr_float"], p["psnr_nearest_rounding"]) for p in c["points"]} == kept
    assert curves[0]["results"]["psnr"] != curves[1]["results"]["psnr"]  # other seeds, other fits


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--codecs", "x264,none", "unknown --codecs name 'none'; choose one of x264, x265"),
        ("--models", "cam,nerf", "nerf"),
        ("--params", "", "--models, --params and --bits each need at least one value"),
    ],
)
def test_eval_rd_rejects_unknown_names_before_fitting(tmp_path, option, value, message):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(2))
    script = [sys.executable, str(REPO / "scripts" / "eval_rd.py"), "--video", str(root), "--out", str(tmp_path / "rd")]
    done = subprocess.run([*script, option, value], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "rd").exists()  # nothing fitted


def test_cam_without_norm_starts_equal_to_the_plain_generator():
    times = torch.tensor([0.0, 0.4, 1.0])
    torch.manual_seed(0)
    plain = build_generator(GeneratorConfig(**SMALL), 32, 32)
    torch.manual_seed(0)
    cam = build_generator(GeneratorConfig(**SMALL, time_grid=7, cam_norm="none"), 32, 32)
    torch.manual_seed(0)
    normed = build_generator(GeneratorConfig(**SMALL, time_grid=7), 32, 32)
    with torch.no_grad():
        assert torch.equal(cam(times), plain(times))  # gamma = 1, beta = 0 and nothing normalised
        assert not torch.allclose(normed(times), plain(times), atol=1e-3)  # instance norm changes it
    with pytest.raises(CamfieldsError, match="cam_norm"):
        build_generator(GeneratorConfig(**SMALL, time_grid=7, cam_norm="batch"), 32, 32)


def test_modulation_lr_mult_gives_the_cam_time_grid_its_own_rate():
    from camfields.training.config import TrainConfig
    from camfields.training.optim import build_optimizer

    model = build_generator(resolve_config("ffnerv_cam").generator, 80, 160)
    groups = {g["name"]: g for g in build_optimizer(model, TrainConfig(lr=1e-3, modulation_lr_mult=2.0)).param_groups}
    assert [id(p) for p in groups["modulation"]["params"]] == [id(model.time_grid.table)]
    frame_grid_ids = {id(p) for p in model.stem.parameters()}
    assert frame_grid_ids and frame_grid_ids <= {id(p) for p in groups["grid"]["params"]}
    assert groups["modulation"]["lr"] == pytest.approx(2e-3) and groups["grid"]["lr"] == pytest.approx(1e-2)


def test_tasks_import_without_imageio_ffmpeg_and_video_io_says_what_is_missing(tmp_path):
    """A NeRF fit with no turntable needs no ffmpeg; reading a video without it is one clear error."""
    (tmp_path / "clip.mp4").write_bytes(b"not read")
    code = (
        "import sys; sys.modules['imageio_ffmpeg'] = None\n"
        "import camfields.tasks.nerf, camfields.tasks.video\n"
        "from camfields.io.video import read_video\n"
        "from camfields.errors import CamfieldsError\n"
        "try:\n"
        f"    read_video({str(tmp_path / 'clip.mp4')!r})\n"
        "except CamfieldsError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "needs imageio-ffmpeg" in done.stdout


def test_a_misspelt_quant_steps_is_refused_with_the_choices():
    with pytest.raises(CamfieldsError, match="unknown compression.quant_steps 'chanel'; choose one of tensor, channel"):
        resolve_config("ffnerv", overrides={"compression": {"quant_steps": "chanel"}})


@pytest.mark.slow
def test_fit_video_script_takes_a_frame_range_a_crop_and_a_size(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(8))
    config = tmp_path / "tiny.toml"
    config.write_text("[generator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()))
    script = [sys.executable, str(REPO / "scripts" / "fit_video.py"), "--video", str(root), "--config", str(config)]
    options = ["--start", "1", "--stride", "2", "--frames", "3", "--crop", "24x20", "--size", "16x8", "--epochs", "2"]
    done = subprocess.run(
        [*script, *options, "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["width"], metrics["height"], metrics["frames"]) == (16, 8, 3)
    # the metrics were measured against exactly this clip: frames 1, 3, 5, centre 24x20, area-resized
    clip = read_video(root, start=1, frames=3, stride=2, crop=(24, 20), size=(16, 8))
    decoded = decode_frames(tmp_path / "run" / "video.camf")
    assert quality(decoded, clip)["psnr"] == pytest.approx(metrics["psnr"], abs=1e-6)
    assert quality(decoded, read_video(root, frames=3, size=(16, 8)))["psnr"] != pytest.approx(metrics["psnr"])
    for bad, message in [("--crop=24", "--crop must look like 320x180"), ("--crop=64x64", "crop 64x64 is larger")]:
        done = subprocess.run([*script, bad, "--out", str(tmp_path / "bad")], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("crop", [{"crop_width": 24}, {"crop_width": -24, "crop_height": -20}])
def test_a_half_or_negative_crop_is_refused(crop):
    with pytest.raises(CamfieldsError, match="give both crop_width and crop_height"):
        resolve_config("cam", overrides=crop).validate()


def test_pruning_zeroes_the_smallest_conv_weights_and_the_file_keeps_them_zero(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(6))
    overrides = {"epochs": 10, "prune": 0.5, "generator": SMALL, "train": {"lr": 1e-2}}
    dense = fit_video(root, resolve_config("cam", overrides={**overrides, "prune": 0.0}), tmp_path / "d", "cpu", False)
    pruned = fit_video(root, resolve_config("cam", overrides=overrides), tmp_path / "p", "cpu", progress=False)
    zeros = {}
    for t in read_bitstream(tmp_path / "p" / "video.camf").tensors:
        zeros[t.name] = float(np.mean(t.values == 0))
    convs = [name for name in zeros if name.startswith("convs.") and name.endswith("weight")]
    assert convs and all(zeros[name] >= 0.5 for name in convs), zeros
    assert zeros["head.weight"] < 0.5  # only the convolutions are pruned
    # the zeros cost fewer bits than the dense weights of the same model
    assert pruned["bytes"] < 0.9 * dense["bytes"], (pruned["bytes"], dense["bytes"])
    assert pruned["prune"] == 0.5 and dense["prune"] == 0.0


@pytest.mark.slow
def test_gpu_video_script_sweeps_and_keeps_every_finished_point(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(6))
    config = tmp_path / "tiny.toml"
    config.write_text("epochs = 2\n[generator]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in SMALL.items()))
    env = {
        "VIDEO": str(root),
        "VIDEO_CONFIG": str(config),
        "VIDEO_MODELS": "nerv,cam",
        "VIDEO_PARAMS": "8000,16000,32000",
        "VIDEO_CRF": "45,38,31,24",
        "VIDEO_WORK": str(tmp_path / "work"),
        "OUT": str(tmp_path / "out"),
        # a deadline no machine reaches, and fit costs that give each of the 6 fits one or two epochs
        # in it, so the plan does not depend on this machine's speed
        "DEADLINE": "3000",
        "VIDEO_FIT_COST": "200,0",
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_video.sh")], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0 and "eval_rd exit 0" in done.stdout, done.stdout + done.stderr
    rd = json.loads((tmp_path / "out" / "rd.json").read_text())
    assert [c["name"] for c in rd["codecs"]] == ["camfields-nerv", "camfields-cam", "x264"]
    points = json.loads((tmp_path / "out" / "points.json").read_text())
    assert sorted(points) == sorted(f"{m}_{p}_6bit" for m in ("nerv", "cam") for p in (8000, 16000, 32000))
    cam = rd["codecs"][1]["results"]
    assert cam["psnr"] == [points[f"cam_{p}_6bit"]["psnr"] for p in (8000, 16000, 32000)]
    # with a DEADLINE the fits share the epochs of the time budget's plan (copied to OUT too)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert rd["time_budget"] == plan and plan["time_budget_seconds"] <= 3000 - 20
    assert {p["epochs"] for p in points.values()} == {plan["epochs"]} and plan["epochs"] in (1, 2)
    assert {(f["seconds_per_epoch"], f["seconds_once"]) for f in plan["fits"]} == {(200.0, 0.0)}


def test_a_video_fit_says_what_it_does_after_training(tmp_path, capsys):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(4))
    cfg = resolve_config("cam", overrides={"epochs": 1, "generator": SMALL})
    fit_video(root, cfg, tmp_path / "run", "cpu", progress=True)
    shown = capsys.readouterr().err
    for phase in ("clip cam: rendering 4 frames", "clip cam: encoding", "clip cam: decoding"):
        assert phase in shown, shown[-2000:]
    fit_video(root, cfg, tmp_path / "quiet", "cpu", progress=False)
    assert "clip cam:" not in capsys.readouterr().err


def tiny_qat_fits(tmp_path: Path, setting: str, values: tuple[float, ...], bits: int) -> dict[float, dict]:
    """Metrics of tiny fits of the synthetic clip (half the epochs through the quantizer), one per
    value of ``setting``, each in ``tmp_path / f"run{value}"``."""
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(6))
    overrides = {"epochs": 20, "generator": SMALL, "train": {"lr": 1e-2}}
    compression = {"bits": bits, "qat_fraction": 0.5}
    return {
        value: fit_video(
            root,
            resolve_config("cam", overrides={**overrides, "compression": {**compression, setting: value}}),
            tmp_path / f"run{value}",
            "cpu",
            False,
        )
        for value in values
    }


def test_qat_dampening_pulls_the_float_weights_onto_their_levels(tmp_path):
    distances = {}
    for dampening, metrics in tiny_qat_fits(tmp_path, "qat_dampening", (0.0, 1.0), bits=4).items():
        state = torch.load(tmp_path / f"run{dampening}" / "checkpoint.pt", weights_only=True)["model"]
        weights = [v for k, v in state.items() if k.startswith("generator.")]
        distances[dampening] = float(torch.stack([rounding_distance(w, 4) for w in weights]).mean())
        assert metrics["psnr"] > 20, metrics
    # undamped, QAT leaves the float weights anywhere between levels (a uniform spread gives 1/12)
    assert distances[0.0] > 0.04 and distances[1.0] < 0.5 * distances[0.0], distances
    with pytest.raises(CamfieldsError, match="qat_dampening"):
        resolve_config("cam", overrides={"compression": {"qat_dampening": -1.0}}).validate()


def test_rate_weight_trades_quality_for_fewer_bytes(tmp_path):
    results = tiny_qat_fits(tmp_path, "rate_weight", (0.0, 0.01), bits=6)
    # the estimate bounds the coded bits, so pressing on it shrinks the file
    assert results[0.01]["bytes"] < 0.9 * results[0.0]["bytes"], results
    assert results[0.01]["psnr"] > results[0.0]["psnr"] - 1.0, results
    with pytest.raises(CamfieldsError, match="rate_weight"):
        resolve_config("cam", overrides={"compression": {"rate_weight": -0.1}}).validate()


def test_plan_epochs_gives_the_most_epochs_that_fit_and_says_when_none_does():
    costs = [FitCost(epoch_seconds=2.0, fixed_seconds=10.0), FitCost(epoch_seconds=3.0, fixed_seconds=5.0)]
    epochs = plan_epochs(costs, 100.0, margin=0.9)
    assert 15 + 5 * epochs <= 90 < 15 + 5 * (epochs + 1)
    assert plan_epochs(costs, 100.0, margin=1.0) == 17
    with pytest.raises(CamfieldsError, match="too short for these 2 fits: one epoch each needs about 22 s"):
        plan_epochs(costs, 19.0)


def test_probe_fit_times_steps_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    video = torch.from_numpy(synthetic_clip(6)).float() / 255
    cfg = resolve_config("ffnerv_cam", overrides={"generator": SMALL, "batch_frames": 2})
    cost = probe_fit(video, cfg, torch.device("cpu"), steps=2, load_seconds=3.0)
    assert 0 < cost.epoch_seconds < float("inf") and 3.0 < cost.fixed_seconds < float("inf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_eval_rd_time_budget_gives_every_fit_the_planned_epochs(tmp_path):
    # 4 fits at an assumed 500 s per epoch in 3000 s: one epoch each, however fast this machine is
    options = ("--models", "nerv,cam", "--params", "8000,16000", "--codecs", "", "--time-budget", "3000")
    options += ("--fit-cost", "500,0")
    done = eval_rd(tmp_path, 4, 3, *options)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "rd" / "rd.json").read_text())
    plan = report["time_budget"]
    assert plan == json.loads((tmp_path / "rd" / "plan.json").read_text())
    fits = [(f["model"], f["params"]) for f in plan["fits"]]
    assert fits == [("nerv", 8000), ("cam", 8000), ("nerv", 16000), ("cam", 16000)]  # size-major
    costs = [FitCost(f["seconds_per_epoch"], f["seconds_once"]) for f in plan["fits"]]
    assert plan["epochs"] == plan_epochs(costs, plan["seconds_left_for_fits"]) == 1
    for model, params in fits:
        config = json.loads((tmp_path / "rd" / f"{model}_{params}_8bit" / "config.json").read_text())
        assert config["epochs"] == plan["epochs"] and config["target_params"] == params
    # a rerun with the same budget keeps the plan, so the finished fits are re-encoded, not refused
    again = eval_rd(tmp_path, 4, 3, *options)
    assert again.returncode == 0 and "the plan in" in again.stdout, again.stderr[-2000:]
    # a damaged plan is reported in one line, and the fits are left as they are
    (tmp_path / "rd" / "plan.json").write_text('{"epochs": 3')
    damaged = eval_rd(tmp_path, 4, 3, *options)
    assert damaged.returncode == 2 and "is not a time-budget plan" in damaged.stderr, damaged.stderr[-2000:]
    assert "Traceback" not in damaged.stderr and (tmp_path / "rd" / "cam_16000_8bit" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--time-budget", "0.001"), "too short for these 1 fits"),
        (
            ("--time-budget", "60", "--epochs", "5"),
            "--time-budget takes a number of seconds > 0, and replaces --epochs",
        ),
        (("--time-budget", "-5"), "--time-budget takes a number of seconds > 0"),
        (("--time-budget", "60", "--fit-cost", "fast,0"), "--fit-cost takes two numbers"),
        (("--time-budget", "60", "--fit-cost", "0,0"), "--fit-cost takes two numbers"),
        (("--fit-cost", "1,0"), "with --time-budget"),
    ],
)
def test_eval_rd_time_budget_errors(tmp_path, options, message):
    done = eval_rd(tmp_path, 2, 3, "--models", "cam", "--params", "8000", "--codecs", "", *options)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_a_video_fit_extends_with_more_epochs(tmp_path):
    root = write_frames_folder(tmp_path / "clip", synthetic_clip(4))
    first = fit_video(
        root,
        resolve_config("cam", overrides={"epochs": 2, "generator": SMALL}),
        tmp_path / "run",
        "cpu",
        progress=False,
    )
    longer = resolve_config("cam", overrides={"epochs": 3, "generator": SMALL})
    extended = fit_video(root, longer, tmp_path / "run", "cpu", resume=True, progress=False)
    assert first["steps"] == 8 and extended["resumed_from"] == 8 and extended["steps"] == 12 and extended["epochs"] == 3
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["epochs"] == 3 and config["train"]["schedule_steps"] == 8  # the cosine keeps its 2-epoch span
    assert read_bitstream(tmp_path / "run" / "video.camf").file_bytes == extended["bytes"]
    fewer = resolve_config("cam", overrides={"epochs": 1, "generator": SMALL})
    with pytest.raises(
        CamfieldsError, match=r"with 1 epochs: it was planned for 3; --resume can extend a fit \(more epochs\)"
    ):
        fit_video(root, fewer, tmp_path / "run", "cpu", resume=True, progress=False)


def test_a_video_config_recorded_before_the_compression_block_reads_as_today():
    from camfields.config import from_dict, to_dict, upgraded
    from camfields.training.run_dir import with_missing_keys

    cfg = resolve_config("cam", overrides={"compression": {"bits": 6, "rate_weight": 0.5}})
    recorded = to_dict(cfg)
    block = recorded.pop("compression")
    recorded |= {old: block[new.split(".")[1]] for old, new in VideoConfig.LEGACY_KEYS.items()}  # as fits wrote them
    moved = with_missing_keys(upgraded(recorded, VideoConfig), to_dict(VideoConfig()))
    assert from_dict(VideoConfig, moved, "config.json") == cfg


def test_a_config_file_written_before_the_compression_block_still_resolves(tmp_path):
    (tmp_path / "old.toml").write_text("bits = 6\nrate_weight = 0.5\n[models.cam]\nqat_fraction = 0.4\n")
    cfg = resolve_config("cam", str(tmp_path / "old.toml"))
    assert (cfg.compression.bits, cfg.compression.rate_weight, cfg.compression.qat_fraction) == (6, 0.5, 0.4)
