"""Image quality metrics: PSNR, SSIM (pytorch-msssim) and LPIPS (lpips, when loadable).

Images are (H, W, C) float tensors in [0, 1]; predictions are clamped to [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim

_LPIPS_STATE: dict[str, object] = {}


def mse_to_psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of a mean squared error on a [0, 1] signal."""
    return -10.0 * torch.log10(mse.clamp_min(1e-20))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB between two signals in [0, 1], ``pred`` clamped to [0, 1]."""
    return float(mse_to_psnr(torch.mean((pred.detach().clamp(0, 1) - target) ** 2)))


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    return image.permute(2, 0, 1)[None].float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM (Gaussian window 11, sigma 1.5; smaller odd window for tiny images)."""
    win = min(11, *[s if s % 2 else s - 1 for s in target.shape[:2]])
    if win < 3:
        return float("nan")
    return float(_ssim(_to_nchw(pred.clamp(0, 1)), _to_nchw(target), data_range=1.0, win_size=win))


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """MS-SSIM over five scales (window 11; frames under 161 px on their short side use the
    largest odd window that five scales allow, and frames under 33 px plain SSIM)."""
    shortest = min(target.shape[:2])
    win = min(11, (shortest - 1) // 16 + 1)
    win -= 1 - win % 2
    if win < 3:
        return ssim(pred, target)
    return float(_ms_ssim(_to_nchw(pred.clamp(0, 1)), _to_nchw(target), data_range=1.0, win_size=win))


def _lpips_model(device: torch.device):
    """The LPIPS (AlexNet) model, or None with one warning if its weights cannot be loaded."""
    if "model" not in _LPIPS_STATE:
        try:
            import lpips

            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _LPIPS_STATE["model"] = lpips.LPIPS(net="alex", verbose=False).eval()
        except Exception as e:  # no network, no cached backbone, or no lpips package
            _LPIPS_STATE["model"] = None
            warnings.warn(
                f"LPIPS is unavailable and reported as null: its AlexNet backbone weights could not be "
                f"loaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                stacklevel=3,
            )
    model = _LPIPS_STATE["model"]
    return None if model is None else model.to(device)


def lpips(pred: torch.Tensor, target: torch.Tensor) -> float | None:
    """LPIPS (AlexNet) distance, or None when the backbone weights are unavailable.

    Gray images are repeated to 3 channels; an alpha channel is ignored.
    """
    model = _lpips_model(target.device)
    if model is None or min(target.shape[:2]) < 16:
        return None

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = _to_nchw(x.clamp(0, 1))
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]
        return x * 2.0 - 1.0

    with torch.no_grad():
        return float(model(prep(pred), prep(target)))


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float | None]:
    """PSNR, SSIM and LPIPS of an (H, W, C) prediction against its target."""
    values = {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "lpips": lpips(pred, target)}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
