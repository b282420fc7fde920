"""Metrics: PSNR from its definition, SSIM from pytorch-msssim, LPIPS from a local backbone file or null
with one warning line when unavailable; no test downloads anything."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

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


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No download (torch.hub's downloader raises), an empty hub cache under tmp_path, no backbone
    variable and no LPIPS model built yet. Returns the hub's checkpoints folder."""

    def no_download(url, *args, **kwargs):
        raise OSError(f"downloads are disabled in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(metrics.BACKBONE_ENV, raising=False)
    monkeypatch.setattr(metrics, "_LPIPS_STATE", {})
    return Path(torch.hub.get_dir()) / "checkpoints"


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A randomly initialised torchvision AlexNet state dict saved as torchvision names it."""
    import torchvision

    path = tmp_path_factory.mktemp("backbone") / metrics.BACKBONE_FILE
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def _one_line(warning: warnings.WarningMessage) -> str:
    """The warning as Python prints it, asserted to be a single line (no source line under it)."""
    text = warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno, warning.line)
    assert len(text.strip().splitlines()) == 1, text
    return text


def test_lpips_uses_the_backbone_file_that_the_variable_names(offline, backbone, monkeypatch):
    monkeypatch.setenv(metrics.BACKBONE_ENV, str(backbone))
    a, b = torch.rand(32, 32, 3), torch.rand(32, 32, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unavailable warning, no library noise
        assert metrics.lpips(a, a) == 0.0
        distance = metrics.lpips(a, b)
        other = metrics.lpips(a, 1 - a)
    assert isinstance(distance, float) and math.isfinite(distance) and distance > 0
    assert other != distance
    saved = torch.load(backbone, weights_only=True)
    loaded = metrics._LPIPS_STATE["model"].net.state_dict()
    assert torch.equal(loaded["slice1.0.weight"], saved["features.0.weight"])
    assert torch.equal(loaded["slice5.10.bias"], saved["features.10.bias"])


def test_a_backbone_in_the_hub_cache_gives_the_same_lpips_as_the_variable(offline, backbone, monkeypatch):
    offline.mkdir(parents=True)
    (offline / metrics.BACKBONE_FILE).symlink_to(backbone)
    a, b = torch.rand(32, 32, 3), torch.rand(32, 32, 3)
    from_hub = metrics.lpips(a, b)  # torchvision's own loading, from the cache
    assert from_hub is not None
    monkeypatch.setattr(metrics, "_LPIPS_STATE", {})
    monkeypatch.setenv(metrics.BACKBONE_ENV, str(backbone))
    assert metrics.lpips(a, b) == pytest.approx(from_hub, rel=1e-6)


@pytest.mark.parametrize("content", [None, b"not a torch file", {"features.0.weight": torch.zeros(3)}])
def test_a_bad_backbone_file_is_one_warning_naming_it_and_lpips_is_null(offline, tmp_path, monkeypatch, content):
    path = tmp_path / "alexnet.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    monkeypatch.setenv(metrics.BACKBONE_ENV, str(path))
    image = torch.rand(32, 32, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert metrics.lpips(image, image) is None
        assert metrics.lpips(image, image) is None
    assert len(caught) == 1 and caught[0].category is metrics.LpipsUnavailableWarning
    assert f"{metrics.BACKBONE_ENV} names {path}, which" in _one_line(caught[0])


def test_unavailable_lpips_warns_once_on_one_line_with_how_to_enable_it(offline):
    image = torch.rand(32, 32, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert metrics.image_metrics(image, image)["lpips"] is None
        assert metrics.image_metrics(image, 1 - image)["lpips"] is None
    assert len(caught) == 1 and caught[0].category is metrics.LpipsUnavailableWarning
    text = _one_line(caught[0])
    assert "downloads are disabled in tests" in text  # the cause
    assert f"{metrics.BACKBONE_ENV}=/path/to/{metrics.BACKBONE_FILE}" in text and f"{offline}/" in text


def test_lpips_is_computed_when_a_model_is_available(monkeypatch):
    class FakeLPIPS(torch.nn.Module):
        def forward(self, a, b):
            assert a.shape == (1, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
            return (a - b).abs().mean()

    monkeypatch.setattr(metrics, "_LPIPS_STATE", {"model": FakeLPIPS()})
    gray = torch.rand(32, 32, 1)
    assert metrics.lpips(gray, gray) == 0.0
    assert metrics.lpips(gray, 1 - gray) > 0.1
