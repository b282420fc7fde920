"""The classic image codecs of ``codec.image_baselines`` (Pillow): round trips, sizes, refusals."""

from __future__ import annotations

import pytest
import torch

from camfields.codec import image_baselines
from camfields.codec.image_baselines import CODECS, available, code_image, decode, encode
from camfields.errors import CamfieldsError
from camfields.metrics import psnr


def smooth_image(height: int = 64, width: int = 96) -> torch.Tensor:
    """A smooth RGB test image (H, W, 3) at 8-bit levels."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([x, y, 0.5 + 0.4 * torch.sin(9 * x + 5 * y)], dim=-1)
    return torch.round(image * 255) / 255


@pytest.mark.parametrize("name", list(CODECS))
def test_each_codec_round_trips_with_quality_rising_over_its_sweep(name):
    if not available(name):
        pytest.skip(f"this Pillow lacks {name}")
    image = smooth_image()
    low, high = CODECS[name].sweep[0], CODECS[name].sweep[-1]
    coarse, fine = code_image(image, name, low), code_image(image, name, high)
    assert coarse.image.shape == fine.image.shape == image.shape
    assert coarse.image.dtype == torch.float32 and 0 <= coarse.image.min() and coarse.image.max() <= 1
    assert torch.equal(torch.round(fine.image * 255), fine.image * 255)  # 8-bit levels
    assert psnr(fine.image, image) > psnr(coarse.image, image) + 3
    assert fine.bytes > coarse.bytes
    data = encode(image, name, high)
    assert fine.bytes == len(data)  # the rate is the encoded buffer's length
    assert torch.equal(decode(data), fine.image)


def test_jpeg2000_meets_its_target_rate():
    if not available("jpeg2000"):
        pytest.skip("this Pillow lacks JPEG 2000")
    image = torch.round(torch.rand(128, 192, 3, generator=torch.Generator().manual_seed(0)) * 255) / 255  # noise
    coded = code_image(image, "jpeg2000", 1.0)
    assert 0.8 <= 8 * coded.bytes / (128 * 192) <= 1.05


def test_unknown_or_unavailable_codec_and_wrong_input_are_one_sentence(monkeypatch):
    with pytest.raises(CamfieldsError, match="unknown image codec 'png'; choose from jpeg, webp, avif, jpeg2000"):
        encode(smooth_image(), "png", 50)
    assert not available("png")
    monkeypatch.setattr(image_baselines.features, "check", lambda feature: False)
    assert not available("jpeg")
    with pytest.raises(CamfieldsError, match="image codec 'jpeg' is unavailable: this Pillow was built without it"):
        code_image(smooth_image(), "jpeg", 50)
    monkeypatch.undo()
    with pytest.raises(CamfieldsError, match=r"jpeg takes an RGB image \(H, W, 3\), got shape \(64, 96, 1\)"):
        encode(smooth_image()[..., :1], "jpeg", 50)
