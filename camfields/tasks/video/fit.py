"""Fitting a clip: the frame objective, the video task (sizing, QAT, encoding, decoding, metrics)
and ``fit_video``."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from camfields.codec.bitstream import read_bitstream
from camfields.codec.video import decode_frames, encode, frame_times, to_8bit
from camfields.compression.qat import QuantizationSchedule
from camfields.compression.rounding import round_sigmoid_head
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.fields import count_parameters
from camfields.io.images import save_png
from camfields.io.video import read_video
from camfields.metrics import ms_ssim, mse_to_psnr, psnr
from camfields.modules.nerv import build_generator
from camfields.ops.sync import to_device
from camfields.tasks.video.config import PRESETS, VideoConfig
from camfields.tasks.video.model import MagnitudePruning, VideoModel
from camfields.tasks.video.sizing import size_for_params
from camfields.training import Evaluation, FitResult
from camfields.training.fit import Setup, Task, fit
from camfields.training.progress import announce


class FrameObjective:
    """MSE on random frames; evaluation renders every frame through the quantized weights."""

    def __init__(self, video: torch.Tensor, batch_frames: int, chunk: int = 4):
        self.video = video.permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
        self.times = frame_times(len(video)).to(video.device)
        self.batch_frames, self.chunk = batch_frames, chunk

    def loss(self, model: VideoModel, generator: torch.Generator, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.randint(len(self.times), (self.batch_frames,), generator=generator)
        index = to_device(shard.take(batch), self.times.device)
        # the generator's own weights: the loop substitutes their levels during QAT (compression.qat)
        mse = shard.mean((model(self.times[index], False) - self.video[index]) ** 2, len(batch))
        return mse, mse_to_psnr(mse.detach())

    @torch.no_grad()
    def render(self, model: VideoModel, quantized: bool) -> torch.Tensor:
        """Every frame (T, 3, H, W) in [0, 1]."""
        return torch.cat([model(t, quantized) for t in self.times.split(self.chunk)]).clamp(0, 1)

    def evaluate(self, model: VideoModel) -> Evaluation:
        frames = self.render(model, quantized=True)
        return Evaluation({"psnr": psnr(frames, self.video)}, {"frame_0": frames[0].permute(1, 2, 0)})


@torch.no_grad()
def round_head_for_clip(model: VideoModel, objective: FrameObjective, max_bytes: int = 1 << 28) -> int:
    """Pick the levels of the generator's 1x1 RGB head for the clip (``compression.rounding``) and set
    its float weights to them, so the bitstream stores them; the rest of the generator is read
    through its quantized weights, as the decoder will. The head's inputs come from frames
    evenly spaced over the clip, at most ``max_bytes`` of them. Returns how many weights took
    the other level."""
    generator = model.generator
    twin = copy.deepcopy(generator)
    twin.load_state_dict(model.quantized_parameters(), strict=False)
    frames = len(objective.times)
    per_frame = 4 * generator.channels[-1] * generator.height * generator.width
    index = torch.linspace(0, frames - 1, max(1, min(frames, max_bytes // per_frame))).round().long()
    index = index.to(objective.times.device)
    features = torch.cat([twin.features(t) for t in objective.times[index].split(objective.chunk)])
    head = generator.head
    weight, bias, moved = round_sigmoid_head(
        features, objective.video[index], head.weight, head.bias, model.bits, model.per_channel
    )
    head.weight.copy_(weight)
    head.bias.copy_(bias)
    return moved


def mean_psnr(frames: torch.Tensor, video: torch.Tensor) -> float:
    """Mean per-frame PSNR of frames (T, H, W, 3) against the source."""
    return sum(psnr(a, b) for a, b in zip(frames, video)) / len(frames)


def quality(frames: torch.Tensor, video: torch.Tensor) -> dict[str, float]:
    """Mean per-frame PSNR and MS-SSIM of 8-bit-rounded frames (T, H, W, 3) against the source."""
    frames = to_8bit(frames)
    return {
        "psnr": mean_psnr(frames, video),
        "ms_ssim": sum(ms_ssim(a, b) for a, b in zip(frames, video)) / len(frames),
    }


class Clip(NamedTuple):
    """A clip to fit: where it came from and its frames (T, H, W, 3) in [0, 1]."""

    path: Path
    frames: torch.Tensor


def load_clip(path: Path, cfg: VideoConfig) -> torch.Tensor:
    """Frames (T, H, W, 3) in [0, 1] of the clip ``cfg`` selects: frame range, centred crop, then resize."""
    size = (cfg.width, cfg.height) if cfg.width else None
    crop = (cfg.crop_width, cfg.crop_height) if cfg.crop_width else None
    return read_video(path, cfg.start, cfg.frames or None, cfg.stride, size, crop)


def qat_start(cfg: VideoConfig, frames: int) -> int:
    """The step at which quantization-aware training starts: the last ``qat_fraction`` of the epochs."""
    steps_per_epoch = math.ceil(frames / cfg.batch_frames)
    return cfg.train.steps - int(round(cfg.compression.qat_fraction * cfg.epochs)) * steps_per_epoch


class VideoTask(Task[VideoConfig, Clip]):
    """Fit a clip with a NeRV-style generator, quantization-aware at the end, and write its bitstream."""

    name = "video"
    presets = PRESETS
    lengthening = ("epochs", "train.steps")  # train.steps derives from epochs

    def load(self, cfg: VideoConfig, source: Path | None) -> Clip:
        if source is None:
            raise CamfieldsError("no video given: pass the clip (a video file or a folder of frames)")
        return Clip(source, load_clip(source, cfg))

    def plan(self, cfg: VideoConfig, data: Clip, shard: Shard) -> VideoConfig:
        """The generator sized to ``target_params`` for the clip, and the training steps of ``epochs``."""
        if cfg.batch_frames < shard.world:
            raise CamfieldsError(
                f"batch_frames = {cfg.batch_frames} is fewer than the {shard.world} processes: "
                "every rank needs a frame per step; raise batch_frames or start fewer processes"
            )
        frames, height, width, _ = data.frames.shape
        gen_cfg = cfg.generator
        if cfg.target_params:
            gen_cfg = size_for_params(gen_cfg, height, width, cfg.target_params, cfg.scale_frame_grids)
        steps = cfg.epochs * math.ceil(frames / cfg.batch_frames)
        return dataclasses.replace(cfg, generator=gen_cfg, train=dataclasses.replace(cfg.train, steps=steps))

    def build(self, cfg: VideoConfig, data: Clip, device: torch.device) -> Setup:
        frames, height, width, _ = data.frames.shape
        compression = cfg.compression
        model = VideoModel(build_generator(cfg.generator, height, width), compression.bits, compression.per_channel)
        start = qat_start(cfg, frames)
        hooks = [
            QuantizationSchedule(
                start,
                cfg.train.steps,
                model.bits,
                model.per_channel,
                compression.qat_dampening,
                compression.rate_weight,
                frames * height * width,
            )
        ]
        if cfg.prune:
            hooks.append(MagnitudePruning(start, cfg.prune))
        objective = FrameObjective(data.frames.to(device), cfg.batch_frames)
        return Setup(model.to(device), objective, f"{data.path.stem} {cfg.model}", hooks)

    def export(self, cfg: VideoConfig, setup: Setup, path: Path) -> int:
        """Write ``video.camf``: the generator's n-bit weights and its config (``codec.video.encode``)."""
        model = setup.model
        frames = len(setup.objective.times)
        return encode(path, model.generator, cfg.generator, model.bits, frames, model.per_channel)

    def evaluate(
        self,
        cfg: VideoConfig,
        data: Clip,
        setup: Setup,
        result: FitResult,
        out_dir: Path,
        shard: Shard,
        progress: bool,
    ) -> dict[str, Any] | None:
        """On rank 0: rounds the RGB head for the clip, encodes ``video.camf``, decodes it and writes
        ``frame_0000.png``. Metrics: PSNR / MS-SSIM (8-bit frames) of the decoded bitstream, PSNR of
        the float model, bits per pixel from the file's bytes, an entropy estimate (labelled),
        parameters, encoding (fit included) and decoding frames per second."""
        if not shard.main:
            return None
        t0 = time.perf_counter()
        model, objective = setup.model, setup.objective
        frames, height, width = len(objective.times), objective.video.shape[2], objective.video.shape[3]

        def say(message: str) -> None:
            if progress:
                announce(f"{setup.label}: {message}")

        source = objective.video.permute(0, 2, 3, 1)  # (T, H, W, 3) on the fit's device: metrics run there
        say(f"rendering {frames} frames with float weights, rounding the head")
        psnr_float = mean_psnr(to_8bit(objective.render(model, quantized=False).permute(0, 2, 3, 1)), source)
        head_moved = round_head_for_clip(model, objective)
        bitstream = out_dir / "video.camf"
        say(f"encoding {bitstream}")
        size = self.export(cfg, setup, bitstream)
        encode_seconds = result.seconds + time.perf_counter() - t0
        say(f"decoding {bitstream} ({size} bytes) and measuring PSNR / MS-SSIM")
        t1 = time.perf_counter()
        decoded = decode_frames(bitstream, source.device)
        decode_seconds = time.perf_counter() - t1
        stream = read_bitstream(bitstream)
        save_png(out_dir / "frame_0000.png", decoded[0])
        pixels = width * height * frames
        return {
            "video": str(data.path),
            "model": cfg.model,
            "width": width,
            "height": height,
            "frames": frames,
            "epochs": cfg.epochs,
            "bits": cfg.compression.bits,
            "prune": cfg.prune,
            "quant_steps": cfg.compression.quant_steps,
            **quality(decoded, source),
            "psnr_float": psnr_float,
            "psnr_nearest_rounding": result.evaluation.metrics["psnr"],  # every weight rounded to its nearest level
            "head_weights_rounded_other_way": head_moved,
            "params": count_parameters(model.generator),
            "bytes": size,
            "bpp": 8 * size / pixels,
            "bpp_entropy_estimate": stream.estimated_payload_bits / pixels,
            "encode_fps": frames / encode_seconds if not result.resumed_from else None,
            "decode_fps": frames / decode_seconds,
        }


VIDEO = VideoTask()


def fit_video(
    path: Path,
    cfg: VideoConfig,
    out_dir: Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    extend: bool = True,
) -> dict[str, Any]:
    """Fit, quantize, encode and decode a clip; writes ``video.camf``, ``metrics.json`` and a preview.

    Metrics: see ``VideoTask.evaluate`` and ``tasks.base.run_fit``. Under torchrun the frames of
    every batch are split across the ranks; rank 0 encodes and writes, and every rank returns
    the metrics. ``extend`` False refuses to extend a fit found in ``out_dir`` (a sweep's points).
    """
    return fit(VIDEO, path, cfg, out_dir, device, resume, progress, extend)
