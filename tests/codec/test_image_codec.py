"""The image codec (issue 29, item 2 for images): a fitted image run folder to one .camf file, and
the image rebuilt from that file alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_image_task import write

from camfields import CamfieldsError
from camfields.codec import fields
from camfields.codec import image as codec
from camfields.codec.bitstream import read_bitstream, write_bitstream
from camfields.commands.compress import compress
from camfields.commands.decompress import decompress
from camfields.commands.info import facts
from camfields.compression.quantize import fake_quantize
from camfields.distributed import Shard
from camfields.fields import build_field
from camfields.io.images import downscale, load_embedded_image, load_image, pixel_coords
from camfields.metrics import psnr
from camfields.modules import FourierFeatures
from camfields.tasks.image import IMAGE, fit_images, resolve_config
from camfields.training.checkpoint import load_checkpoint, read_json
from camfields.training.fit import run_fit

TINY = {"field": {"hidden": 16, "encoding": {"num_features": 8}}, "train": {"steps": 4, "checkpoint_every": 2}}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A finished tiny cam fit of a 12x16 random RGB PNG: (run folder, config, fitted model, source pixels)."""
    root = tmp_path_factory.mktemp("image-codec")
    source = write(root / "noise.png", np.random.default_rng(3).integers(0, 255, (12, 16, 3), dtype=np.uint8))
    cfg = resolve_config("cam", overrides=TINY)
    fit_images(source, cfg, root / "run", "cpu", progress=False)
    model = build_field(cfg.field, in_dim=2, out_dim=3)
    model.load_state_dict(load_checkpoint(root / "run" / "checkpoint.pt")["model"])
    return root / "run", cfg, model.eval(), load_image(source).pixels


def reference_render_of(model: torch.nn.Module, height: int, width: int) -> torch.Tensor:
    """The model's image the way the image task renders it."""
    with torch.no_grad():
        return model(pixel_coords(height, width)).reshape(height, width, 3).clamp(0, 1)


def reference_render(model: torch.nn.Module) -> torch.Tensor:
    """The model's 12x16 image the way the image task renders it."""
    return reference_render_of(model, 12, 16)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_fitted_image_decodes_from_its_file_to_the_quantized_fields_image(fitted, tmp_path, bits):
    run, cfg, model, pixels = fitted
    path = tmp_path / "image.camf"
    result = compress(run, bits, path)
    assert result["bytes"] == path.stat().st_size and result["bpp"] == 8 * path.stat().st_size / (12 * 16)
    field = codec.read_image_field(path)
    assert (field.height, field.width, field.channels, field.png_bits) == (12, 16, 3, 8)
    decoded_state, fitted_state = field.model.state_dict(), model.state_dict()
    parameters = dict(model.named_parameters())
    assert set(fields.stored_bits(model, bits)) == set(parameters) | {"encoding.proj"}
    for name, value in fitted_state.items():  # every tensor bit for bit at its levels (the projection at 16 bits)
        depth = bits if name in parameters else fields.STORED_BUFFERS[FourierFeatures]["proj"]
        assert torch.equal(decoded_state[name], fake_quantize(value, depth)), name
    assert not torch.equal(decoded_state["output_layer.weight"], fitted_state["output_layer.weight"])
    decoded = codec.decode_image(path)
    assert torch.allclose(decoded, reference_render(fields.quantized_model(model, bits)), rtol=0, atol=1e-6)
    if bits == 8:
        assert abs(psnr(decoded, pixels) - psnr(reference_render(model), pixels)) < 1.0


def test_info_shows_an_image_files_weight_bits_and_bits_per_pixel(fitted, tmp_path):
    compress(fitted[0], 5, tmp_path / "image.camf")
    info = facts(tmp_path / "image.camf")
    assert info["format"] == codec.IMAGE_FORMAT and (info["frames"], info["width"], info["height"]) == (1, 16, 12)
    assert info["bits"] == 5 and info["bpp"] == 8 * (tmp_path / "image.camf").stat().st_size / (12 * 16)


def test_the_export_of_the_image_task_writes_the_same_8_bit_file(fitted, tmp_path):
    run, cfg, model, pixels = fitted
    setup = IMAGE.build(cfg, load_image(next(run.parent.glob("*.png"))), torch.device("cpu"))
    setup.model.load_state_dict(model.state_dict())
    IMAGE.export(cfg, setup, tmp_path / "export.camf")
    compress(run, cfg.compression.bits, tmp_path / "command.camf")
    assert (tmp_path / "export.camf").read_bytes() == (tmp_path / "command.camf").read_bytes()


def test_a_buffer_neither_stored_nor_rebuilt_is_refused(tmp_path):
    cfg = resolve_config("cam", overrides={"field": {"hidden": 8, "encoding": {"kind": "sinusoidal", "num_freqs": 2}}})
    model = build_field(cfg.field, 2, 3)
    codec.encode_image_field(tmp_path / "ok.camf", model, cfg.field, 4, 4, 3, 8)  # derived freqs are rebuilt
    assert "encoding.freqs" not in fields.stored_bits(model, 8)
    with torch.no_grad():
        model.encoding.freqs.mul_(2)
    with pytest.raises(CamfieldsError, match="buffer encoding.freqs of the field is not the one its config builds"):
        codec.encode_image_field(tmp_path / "bad.camf", model, cfg.field, 4, 4, 3, 8)


def forged(source: Path, target: Path, **changes) -> Path:
    """``source`` rewritten with its header's entries replaced (nested dicts merged one level deep), in
    format 3 (one shared histogram: fast to write, and read through the same header checks)."""
    stream = read_bitstream(source)
    header = dict(stream.config)
    for key, value in changes.items():
        header[key] = {**header[key], **value} if isinstance(value, dict) else value
    write_bitstream(target, header, stream.bits, stream.tensors, version=3)
    return target


def test_damaged_and_forged_files_are_each_refused_in_one_sentence(fitted, tmp_path):
    run = fitted[0]
    good = tmp_path / "good.camf"
    compress(run, 6, good)
    data = good.read_bytes()
    (tmp_path / "short.camf").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flipped.camf").write_bytes(bytes(flipped))
    cases = {
        tmp_path / "short.camf": "checksum mismatch",
        tmp_path / "flipped.camf": "checksum mismatch",
        forged(good, tmp_path / "other.camf", format="camfields-audio/1"): "not a camfields image",
        forged(good, tmp_path / "narrow.camf", field={"hidden": 8}): r"tensor \S+ has shape \(16, 16\), the field",
        forged(good, tmp_path / "huge.camf", height=100_000): "height and width must be from 1 to 65536",
        forged(good, tmp_path / "wide.camf", height=8192, width=8192): "exceeds the decoder's 16,777,216 pixels",
        forged(good, tmp_path / "bits.camf", weight_bits=3): "integers beyond its 3-bit range",
        forged(good, tmp_path / "kind.camf", field={"encoding": {"kind": "wavelet"}}): "describes no field",
    }
    for path, message in cases.items():
        with pytest.raises(CamfieldsError, match=message) as caught:
            codec.decode_image(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_compress_says_which_runs_it_cannot_write(fitted, tmp_path):
    run = fitted[0]
    (tmp_path / "sculpture").mkdir()
    (tmp_path / "sculpture" / "config.json").write_text('{"task": "sculpture"}')
    (tmp_path / "nerf").mkdir()
    (tmp_path / "nerf" / "config.json").write_text('{"task": "nerf"}')
    with pytest.raises(CamfieldsError, match="names the task 'sculpture'; compress knows image, nerf, dynamic, video"):
        compress(tmp_path / "sculpture", 8, tmp_path / "s.camf")
    with pytest.raises(CamfieldsError, match="holds no checkpoint.pt: the fit has not saved its weights yet"):
        compress(tmp_path / "nerf", 8, tmp_path / "n.camf")
    with pytest.raises(CamfieldsError, match="weights' bit depth must be from 2 to 16, got 1"):
        compress(run, 1, tmp_path / "one.camf")
    (tmp_path / "taken.camf").write_bytes(b"mine")
    with pytest.raises(CamfieldsError, match="already exists"):
        compress(run, 8, tmp_path / "taken.camf")
    assert (tmp_path / "taken.camf").read_bytes() == b"mine"


def test_the_command_line_round_trip_imports_no_training_code_to_decode(fitted, tmp_path):
    run = fitted[0]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def camfields(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "camfields", *argv], capture_output=True, text=True, env=env)

    done = camfields("compress", str(run), "--bits", "8", "--out", str(tmp_path / "image.camf"))
    assert done.returncode == 0, done.stderr
    assert "bpp" in done.stdout
    done = camfields("decompress", str(tmp_path / "image.camf"), "--out", str(tmp_path / "image.png"))
    assert done.returncode == 0, done.stderr
    png = load_image(tmp_path / "image.png").pixels
    expected = torch.round(codec.decode_image(tmp_path / "image.camf") * 255) / 255
    assert torch.allclose(png, expected, atol=1e-6)
    again = camfields("decompress", str(tmp_path / "image.camf"), "--out", str(tmp_path / "image.png"))
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr
    code = (
        "import sys, camfields.codec.image, camfields.commands.decompress\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('camfields.training', 'camfields.tasks', "
        "'camfields.metrics')))\n"
        "sys.exit(str(bad) if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_decompress_decodes_a_video_file_as_decode_does_and_refuses_an_unknown_field(tmp_path):
    from camfields.codec.video import decode_frames, encode
    from camfields.modules.nerv import GeneratorConfig, build_generator

    gen = GeneratorConfig(strides=[2, 2], channels=8, stem_channels=4, stem_hidden=16, embedding_levels=4)
    encode(tmp_path / "clip.camf", build_generator(gen, 16, 16), gen, bits=8, frames=2)
    assert "decoded 2 video frames" in decompress(tmp_path / "clip.camf", tmp_path / "frames")
    expected = (decode_frames(tmp_path / "clip.camf").clamp(0, 1) * 255).round().byte()
    for k in range(2):
        assert torch.equal(
            load_image(tmp_path / "frames" / f"frame_{k:04d}.png").pixels.mul(255).round().byte(), expected[k]
        )
    write_bitstream(tmp_path / "sculpture.camf", {"format": "camfields-sculpture/1"}, 8, [])
    with pytest.raises(CamfieldsError, match="'camfields-sculpture/1', a field this decoder does not know"):
        decompress(tmp_path / "sculpture.camf", tmp_path / "s.png")


def test_a_latent_pyramid_fit_records_its_image_sized_levels_and_decodes_bit_exactly(tmp_path):
    """pyramid_cam: the task sets the pyramid's finest level to the image's width and height, the run
    folder and the file record it, and the file decodes to the quantized field (each level a tensor
    of its own), trained through that quantizer with the rate term on."""
    source = write(tmp_path / "noise.png", np.random.default_rng(5).integers(0, 255, (12, 16, 3), dtype=np.uint8))
    cfg = resolve_config("pyramid_cam", overrides={"train": {"steps": 6, "checkpoint_every": 3}})
    assert cfg.field.encoding.pyramid.resolution == [] and cfg.compression.rate_weight > 0
    fit_images(source, cfg, tmp_path / "run", "cpu", progress=False)
    recorded = read_json(tmp_path / "run" / "config.json")["field"]["encoding"]["pyramid"]
    assert recorded["resolution"] == [16, 12]
    planned = IMAGE.plan(cfg, load_image(source), Shard())
    model = build_field(planned.field, in_dim=2, out_dim=3)
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"])
    assert [g.resolution for g in model.encoding.grids][:3] == [(16, 12), (8, 6), (4, 3)]
    path = tmp_path / "image.camf"
    compress(tmp_path / "run", 6, path)
    field = codec.read_image_field(path)
    assert field.model.encoding.grids[0].resolution == (16, 12)
    for name, value in model.state_dict().items():
        assert torch.equal(field.model.state_dict()[name], fake_quantize(value, 6)), name
    decoded = codec.decode_image(path)
    assert torch.allclose(decoded, reference_render(fields.quantized_model(model, 6)), rtol=0, atol=1e-6)


def test_a_pyramid_downscaled_past_its_image_says_so_in_one_sentence(tmp_path):
    source = write(tmp_path / "small.png", np.zeros((6, 8, 3), dtype=np.uint8))
    cfg = resolve_config("pyramid", overrides={"downscale": 16, "train": {"steps": 2}})
    with pytest.raises(CamfieldsError, match="downscale 16 leaves no pixels of a 8x6 image"):
        fit_images(source, cfg, tmp_path / "run", "cpu", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_rate_weight_trades_a_pyramids_file_bytes_for_its_psnr_on_a_real_photo(tmp_path):
    # the embedded astronaut photo at 128x128, pyramid, 300 steps through the 6-bit quantizer for the
    # last half; measured when written: rate weight 0.003 -> 6.2 bpp at 29.6 dB, 0.03 -> 0.82 bpp at 20.5 dB
    # (each decoded within 0.15 dB of its float field)
    image = load_embedded_image()
    train = {"steps": 300, "batch_size": 16384, "lr": 1e-3, "schedule": "step", "milestones": [0.7, 0.9]}
    coded = {}
    for weight in (0.003, 0.03):
        overrides = {"downscale": 4, "compression": {"rate_weight": weight}, "train": train}
        cfg = resolve_config("pyramid", overrides=overrides)
        metrics = run_fit(IMAGE, cfg, image, tmp_path / f"{weight}", torch.device("cpu"), progress=False)
        result = compress(tmp_path / f"{weight}", 6, tmp_path / f"{weight}.camf")
        decoded = codec.decode_image(tmp_path / f"{weight}.camf")
        coded[weight] = (result["bpp"], psnr(decoded, downscale(image.pixels, 4)), metrics["psnr"])
    (rich_bpp, rich_psnr, rich_float), (lean_bpp, lean_psnr, lean_float) = coded[0.003], coded[0.03]
    assert rich_bpp > 4 * lean_bpp and rich_psnr > lean_psnr + 5, coded
    assert abs(rich_psnr - rich_float) < 0.5 and abs(lean_psnr - lean_float) < 0.5, coded
    assert lean_psnr > 18, coded  # the lean file still holds the photo


def test_a_pyramid_whose_levels_code_to_almost_nothing_still_decodes(tmp_path):
    """The rate term can leave a pyramid's levels nearly all zeros, which code to far below 1/8 bit per
    weight; the decoder's bound on declared weights must not refuse such a file."""
    cfg = resolve_config("pyramid", overrides={"field": {"encoding": {"pyramid": {"resolution": [384, 256]}}}})
    model = build_field(cfg.field, in_dim=2, out_dim=3)
    with torch.no_grad():
        for grid in model.encoding.grids:
            grid.table.zero_()
        model.encoding.grids[-1].table[0] = 1.0  # one coarse node carries the image's colour
    path = tmp_path / "flat.camf"
    size = codec.encode_image_field(path, model, cfg.field, 256, 384, 3, bits=6)
    weights = sum(p.numel() for p in model.parameters())
    assert weights > 131_000 and weights > 64 * size  # below 1/8 bit per weight
    decoded = codec.decode_image(path)
    assert torch.allclose(decoded, reference_render_of(fields.quantized_model(model, 6), 256, 384), atol=1e-6)


def test_format_5s_dictionary_codes_a_pyramid_files_header_in_a_quarter_of_format_4s_bytes(tmp_path):
    import struct
    import zlib

    from camfields.codec.header_dictionary import header_dictionary

    cfg = resolve_config("pyramid_cam", overrides={"field": {"encoding": {"pyramid": {"resolution": [384, 256]}}}})
    model = build_field(cfg.field, in_dim=2, out_dim=3)
    path = tmp_path / "p.camf"
    codec.encode_image_field(path, model, cfg.field, 256, 384, 3, bits=6)
    data = path.read_bytes()
    _, version, length = struct.unpack_from("<8sHI", data)
    text = zlib.decompressobj(zdict=header_dictionary(version)).decompress(data[14 : 14 + length])
    packer = zlib.compressobj(9, zdict=header_dictionary(4))
    assert version == 5 and length < 100 and 4 * length < len(packer.compress(text) + packer.flush())
