"""Image quality metrics: PSNR, SSIM (pytorch-msssim) and LPIPS (lpips, when loadable).

Images are (H, W, C) float tensors in [0, 1]; predictions are clamped to [0, 1].
LPIPS offline: CAMFIELDS_LPIPS_BACKBONE names a local alexnet-owt-7be5be79.pth (docs/metrics.md).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import warnings
from pathlib import Path

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim

from camfields.errors import CamfieldsError, first_line

BACKBONE_ENV = "CAMFIELDS_LPIPS_BACKBONE"
"""Environment variable naming a local copy of torchvision's AlexNet weights, for offline LPIPS."""
BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
"""The file name of torchvision's ImageNet AlexNet weights (what lpips downloads)."""

_LPIPS_STATE: dict[str, torch.nn.Module | None] = {}


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


class LpipsUnavailableWarning(UserWarning):
    """LPIPS is reported as null: its AlexNet backbone weights could not be loaded."""


def _cause(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(error).__name__}: {first_line(error)}"


def _warn_lpips_unavailable(reason: str) -> None:
    """Warn on one line: no source line is printed (line 0 has none) and the location is the
    package, since the cause is the environment, not the caller's code."""
    warnings.warn_explicit(
        f"LPIPS is reported as null: {reason}", LpipsUnavailableWarning, "camfields", 0, module=__name__
    )


def _load_backbone(model: torch.nn.Module, path: Path) -> None:
    """Copy the ``features.*`` tensors of the torchvision AlexNet state dict in ``path`` into the
    LPIPS model's backbone (lpips keeps torchvision's feature indices as module names inside its
    slices: ``slice2.3.weight`` is ``features.3.weight``); raises CamfieldsError naming the file
    when it is missing, unreadable or not that state dict."""
    where = f"{BACKBONE_ENV} names {path}, which"
    if not path.is_file():
        raise CamfieldsError(f"{where} is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a torch file, no permission, or pickled objects
        pickled = isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e)
        cause = "it holds Python objects besides tensors, refused without running them" if pickled else _cause(e)
        raise CamfieldsError(f"{where} torch cannot read as a state dict ({cause})") from None
    wanted = {}
    for key, param in model.net.state_dict().items():
        source = "features." + key.split(".", 1)[1]
        value = state.get(source) if isinstance(state, dict) else None
        if not isinstance(value, torch.Tensor) or value.shape != param.shape:
            found = "missing" if not isinstance(value, torch.Tensor) else f"of shape {tuple(value.shape)}"
            raise CamfieldsError(
                f"{where} is not torchvision's AlexNet state dict ({BACKBONE_FILE}): "
                f"{source} is {found} (AlexNet's is of shape {tuple(param.shape)})"
            )
        wanted[key] = value
    model.net.load_state_dict(wanted)


def _build_lpips() -> torch.nn.Module:
    """LPIPS (AlexNet, v0.1) in eval mode: the backbone from the file that CAMFIELDS_LPIPS_BACKBONE
    names (no download), else lpips' own loading (torchvision's hub cache, then a download).
    The linear layers' weights ship with the lpips package."""
    import lpips

    backbone = os.environ.get(BACKBONE_ENV)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():  # torchvision's deprecated `pretrained=` and download progress
            warnings.simplefilter("ignore")
            if not backbone:
                return lpips.LPIPS(net="alex", verbose=False).eval()
            model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    _load_backbone(model, Path(backbone).expanduser())
    return model.eval()


def _lpips_model(device: torch.device) -> torch.nn.Module | None:
    """The LPIPS (AlexNet) model on ``device``, built once per process, or None (with one
    LpipsUnavailableWarning, the first time) when its backbone weights cannot be loaded."""
    if "model" not in _LPIPS_STATE:
        try:
            _LPIPS_STATE["model"] = _build_lpips()
        except CamfieldsError as e:
            _LPIPS_STATE["model"] = None
            _warn_lpips_unavailable(str(e))
        except Exception as e:  # no network and no cached backbone, or no lpips package
            _LPIPS_STATE["model"] = None
            hub = Path(torch.hub.get_dir()) / "checkpoints"
            _warn_lpips_unavailable(
                f"its AlexNet backbone could not be loaded ({_cause(e)}); "
                f"to compute it offline, set {BACKBONE_ENV}=/path/to/{BACKBONE_FILE} "
                f"or put that file in {hub}/"
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


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of ``values``; None when there are none or any is missing (None) or not a number (NaN)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(numbers) / len(numbers) if numbers and len(numbers) == len(values) else None
