"""Quantization-aware training shared by every task (compression.qat, the [compression] block)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_image_task import write

from camfields import CamfieldsError
from camfields.compression.config import CompressionConfig
from camfields.compression.qat import QuantizationSchedule, quantization_hooks
from camfields.compression.quantize import fake_quantize
from camfields.distributed import Shard
from camfields.io.images import load_image
from camfields.tasks import image
from camfields.training.loop import TrainingStep
from camfields.training.optim import build_optimizer

TINY = {"field": {"hidden": 16, "encoding": {"num_features": 8}}, "train": {"steps": 4, "batch_size": 64}}


@pytest.mark.parametrize("bits", [3, 6])
def test_an_image_fit_in_qat_trains_on_the_loss_of_its_quantized_field(tmp_path, bits):
    source = write(tmp_path / "noise.png", np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8))
    compression = {"bits": bits, "qat_fraction": 0.5, "qat_dampening": 0.0}
    cfg = image.resolve_config("cam", overrides={**TINY, "compression": compression})
    torch.manual_seed(0)
    setup = image.IMAGE.build(cfg, load_image(source), torch.device("cpu"))
    [schedule] = setup.hooks
    assert isinstance(schedule, QuantizationSchedule) and (schedule.start, schedule.bits) == (2, bits)
    take_step = TrainingStep(setup.model, setup.objective, build_optimizer(setup.model, cfg.train), setup.hooks)
    for step in range(4):
        levels = copy.deepcopy(setup.model)
        with torch.no_grad():
            for p in levels.parameters():
                p.copy_(fake_quantize(p, bits))
        with torch.no_grad():  # the same batch (generator seeded alike) through the float and the level weights
            float_loss = float(setup.objective.loss(setup.model, torch.Generator().manual_seed(step), Shard())[0])
            level_loss = float(setup.objective.loss(levels, torch.Generator().manual_seed(step), Shard())[0])
        loss, _ = take_step(step, torch.Generator().manual_seed(step))
        expected = level_loss if step >= 2 else float_loss
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-6), step
        assert level_loss != pytest.approx(float_loss, rel=1e-6)  # the levels are another field


def test_the_compression_block_asks_for_the_hook_it_describes():
    assert quantization_hooks(CompressionConfig(bits=8), 100, 10) == []  # qat_fraction 0: post-training only
    assert quantization_hooks(CompressionConfig(bits=0, qat_fraction=0.5), 100, 10) == []
    [hook] = quantization_hooks(CompressionConfig(bits=5, qat_fraction=0.25, rate_weight=0.1), 100, 10)
    assert (hook.start, hook.steps, hook.bits, hook.rate_weight, hook.pixels) == (75, 100, 5, 0.1, 10)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bits": 1}, "compression.bits must be 2..16, got 1"),
        ({"qat_fraction": 1.5}, r"qat_fraction must be in \[0, 1\]"),
        ({"rate_weight": -1.0}, "rate_weight must be a number >= 0"),
        ({"quant_steps": "row"}, "compression.quant_steps"),
    ],
)
def test_bad_compression_settings_are_one_sentence(settings, message):
    with pytest.raises(CamfieldsError, match=message):
        image.resolve_config("cam", overrides={"compression": settings})


def test_a_scene_fit_takes_the_same_block_and_zero_bits_means_no_file():
    from camfields.tasks import nerf

    cfg = nerf.resolve_config("ngp", overrides={"compression": {"bits": 0}})
    assert cfg.compression.bits == 0
    with pytest.raises(CamfieldsError, match="qat_fraction needs a bit depth"):
        nerf.resolve_config("ngp", overrides={"compression": {"bits": 0, "qat_fraction": 0.5}})
    with pytest.raises(CamfieldsError, match=r"compression.bits must be 2..16, got 0"):
        image.resolve_config("cam", overrides={"compression": {"bits": 0}})


def test_the_rate_term_prices_a_pyramids_levels_under_contexts_and_the_rest_alone():
    from camfields.compression.context import context_rate_bits
    from camfields.compression.rate import estimated_rate_bits, integer_magnitudes
    from camfields.fields import EncodingConfig, FieldConfig, PyramidConfig, build_field

    encoding = EncodingConfig("pyramid", pyramid=PyramidConfig(levels=3, resolution=[32, 24]))
    field = build_field(FieldConfig(encoding=encoding, hidden=8), 2, 3)
    with torch.no_grad():  # latents in one corner of every level, zero elsewhere, as the rate term leaves them
        for grid in field.encoding.grids:
            image = grid.as_image().clone()
            image.zero_()
            image[:, : image.shape[1] // 3, : image.shape[2] // 3] = torch.randn(
                1, image.shape[1] // 3, image.shape[2] // 3
            )
            grid.table.copy_(image.reshape(1, -1).T)
    schedule = QuantizationSchedule(start=0, steps=2, bits=6, rate_weight=1.0)
    latents = {f"encoding.grids.{k}.table" for k in range(3)}
    named = dict(field.named_parameters())
    rest = estimated_rate_bits([p for n, p in named.items() if n not in latents], 6)
    coded = context_rate_bits([integer_magnitudes(g.table, 6) for g in field.encoding.grids], [32, 16, 8])
    assert schedule.rate_bits(field).item() == pytest.approx((rest + coded).item(), rel=1e-6)
    alone = estimated_rate_bits(list(named.values()), 6)
    assert schedule.rate_bits(field).item() < 0.8 * alone.item()  # the zeros around the corner cost less under contexts
