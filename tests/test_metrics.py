"""Metrics: PSNR from its definition, SSIM from pytorch-msssim, LPIPS null when unavailable."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from camfields import metrics


def test_psnr_matches_its_definition_and_clamps_predictions():
    target = torch.full((4, 4, 3), 0.5)
    pred = target + 0.1
    assert metrics.psnr(pred, target) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    over = target.clone()
    over[0, 0, 0] = 7.0  # clamped to 1.0 -> error 0.5 on 1 of 48 values
    assert metrics.psnr(over, target) == pytest.approx(-10 * math.log10(0.25 / 48), abs=1e-4)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    image = torch.rand(32, 32, 3)
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert metrics.ssim(noisy, image) < 0.9
    assert metrics.ssim(image[:5, :5], image[:5, :5]) == pytest.approx(1.0, abs=1e-6)  # smaller window


def test_lpips_is_null_with_one_warning_when_its_weights_cannot_load(monkeypatch):
    import lpips as lpips_package

    def fail(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(lpips_package, "LPIPS", fail)
    monkeypatch.setattr(metrics, "_LPIPS_STATE", {})
    image = torch.rand(32, 32, 3)
    with pytest.warns(UserWarning, match="LPIPS is unavailable"):
        assert metrics.lpips(image, image) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = metrics.image_metrics(image, image)
    assert result["lpips"] is None and result["psnr"] > 60


def test_lpips_is_computed_when_a_model_is_available(monkeypatch):
    class FakeLPIPS(torch.nn.Module):
        def forward(self, a, b):
            assert a.shape == (1, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
            return (a - b).abs().mean()

    monkeypatch.setattr(metrics, "_LPIPS_STATE", {"model": FakeLPIPS()})
    gray = torch.rand(32, 32, 1)
    assert metrics.lpips(gray, gray) == 0.0
    assert metrics.lpips(gray, 1 - gray) > 0.1
