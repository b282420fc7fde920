"""Neural video representation and compression: a NeRV-style generator (plain or with CAM)
fitted to a clip, quantization-aware training to n-bit weights, and a bitstream file that
the decoder turns back into the frames on its own.

Frame ``k`` of ``T`` sits at time ``t = k / (T - 1)`` in [0, 1] (0 for a single frame).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from camfields import distributed
from camfields.codec.bitstream import Bitstream, QuantizedTensor, read_bitstream, write_bitstream
from camfields.compression.quantize import fake_quantize, rounding_distance, symmetric_integers
from camfields.compression.rate import estimated_rate_bits
from camfields.compression.rounding import round_sigmoid_head
from camfields.config import check_choice, deep_merge, from_dict, resolve_preset_config, to_dict
from camfields.distributed import Shard
from camfields.errors import CamfieldsError
from camfields.io.images import save_png
from camfields.io.video import read_video, write_video
from camfields.metrics import ms_ssim, mse_to_psnr, psnr
from camfields.modules.nerv import EMBEDDINGS, NeRVGenerator, block_channels
from camfields.ops.sync import to_device
from camfields.runtime import device_name
from camfields.tasks.image import count_parameters
from camfields.training import Evaluation, TrainConfig, train
from camfields.training.checkpoint import write_json
from camfields.training.progress import announce
from camfields.training.run_dir import prepare_run_dir
from camfields.training.steps import StepCounted

BITSTREAM_FORMAT = "camfields-video/1"


@dataclass
class GeneratorConfig:
    """Sizes of a NeRV generator (see ``modules.nerv.NeRVGenerator``); ``time_grid`` 0 = no CAM."""

    strides: list[int] = dataclasses.field(default_factory=lambda: [5, 2, 2, 2, 2])
    channels: int = 64
    stem_channels: int = 32
    stem_hidden: int = 128
    reduce: float = 1.2
    min_channels: int = 12
    embedding_levels: int = 80
    time_grid: int = 0
    cam_norm: str = "instance"  # instance | none: the normalisation CAM's scale and shift follow
    embedding: str = "mlp"  # mlp (NeRV's encoding + MLP stem) | grids (FFNeRV's multi-resolution temporal grids)
    frame_grids: list[list[int]] = dataclasses.field(default_factory=lambda: [[8, 16], [32, 4]])  # [nodes, channels]


@dataclass
class VideoConfig:
    """A resolved video fit: clip selection, generator, training, quantization and pruning."""

    model: str = "cam"
    width: int = 0  # frame size after resizing; 0 = the video's own
    height: int = 0
    crop_width: int = 0  # centred crop taken before resizing; 0 = no crop
    crop_height: int = 0
    start: int = 0
    frames: int = 0  # 0 = all
    stride: int = 1
    target_params: int = 0  # scale the generator's widths so the model has about this many parameters
    scale_frame_grids: bool = True  # target_params scales the frame grids' channels too; false keeps them as set
    epochs: int = 300
    batch_frames: int = 1  # frames per training step
    bits: int = 8  # weight bit depth of the bitstream (grids included)
    qat_fraction: float = 0.2  # the last fraction of the epochs trains through the quantizer
    qat_dampening: float = 0.01  # weight of the pull of every float weight towards its level during QAT (0 = off)
    rate_weight: float = 0.0  # during QAT the loss adds this times the estimated bits per pixel (0 = off)
    quant_steps: str = "tensor"  # tensor | channel: one quantization step per tensor, or per output channel
    prune: float = 0.0  # fraction of each convolution's weights zeroed by magnitude before QAT
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(lr=5e-3, schedule="cosine", final_lr_ratio=0.01, checkpoint_every=1000)
    )

    def validate(self) -> None:
        check_choice(self.model, MODEL_PRESETS, "model")
        check_choice(self.quant_steps, QUANT_STEPS, "quant_steps")
        check_choice(self.generator.embedding, EMBEDDINGS, "embedding")
        if min(self.epochs, self.batch_frames, self.stride) < 1 or min(self.start, self.frames) < 0:
            raise CamfieldsError("epochs, batch_frames and stride must be >= 1; start and frames >= 0")
        if not 2 <= self.bits <= 16:
            raise CamfieldsError(f"bits must be in 2..16, got {self.bits}")
        if not 0 <= self.qat_fraction <= 1 or not 0 <= self.prune < 1:
            raise CamfieldsError("qat_fraction must be in [0, 1] and prune in [0, 1)")
        for name in ("qat_dampening", "rate_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise CamfieldsError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if (self.width > 0) != (self.height > 0) or min(self.width, self.height) < 0:
            raise CamfieldsError("give both width and height (or neither, for the video's own size)")
        if (self.crop_width > 0) != (self.crop_height > 0) or min(self.crop_width, self.crop_height) < 0:
            raise CamfieldsError("give both crop_width and crop_height as positive sizes (or neither, for no crop)")
        self.train.validate()


#: one quantization step per tensor, or one per slice along dim 0 (see ``compression.quantize``)
QUANT_STEPS = ("tensor", "channel")

#: the plain NeRV generator and the same with CAM (a 60-node per-channel temporal grid); FFNeRV's
#: multi-resolution temporal grids as the embedding, without and with CAM (30 nodes, the CAM
#: paper's compression setting)
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "nerv": {"generator": {"time_grid": 0}},
    "cam": {"generator": {"time_grid": 60}},
    "ffnerv": {"generator": {"embedding": "grids", "time_grid": 0}},
    "ffnerv_cam": {"generator": {"embedding": "grids", "time_grid": 30}},
}


def resolve_config(
    model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
) -> VideoConfig:
    """Layer the defaults, the model preset, a config file (path or ``scenes/`` preset) and overrides."""
    presets = {name: deep_merge(to_dict(VideoConfig()), preset) for name, preset in MODEL_PRESETS.items()}
    cfg = resolve_preset_config(VideoConfig, presets, "cam", model, config, overrides)
    check_model_identity(cfg, presets, config)
    return cfg


def model_kind(generator: dict[str, Any]) -> tuple[bool, str]:
    """What a video model's name stands for: whether its generator has a CAM grid, and its embedding."""
    return generator["time_grid"] > 0, generator["embedding"]


def check_model_identity(cfg: VideoConfig, presets: dict[str, dict[str, Any]], source: str | None) -> None:
    """Refuse settings that turn ``cfg.model`` into another of the ``presets``: a plain model given
    a CAM grid (``time_grid`` > 0), a CAM model without one, or another embedding. A CAM grid's
    node count and norm may change; whether there is one and which embedding may not, so a fit
    named ``ffnerv`` is always the plain generator it is compared as."""
    expected, got = model_kind(presets[cfg.model]["generator"]), model_kind(to_dict(cfg.generator))
    if got != expected:
        matching = [name for name, preset in presets.items() if model_kind(preset["generator"]) == got]
        raise CamfieldsError(
            f"{f'config {source}' if source else 'the settings'}: [generator] time_grid = {cfg.generator.time_grid} "
            f"and embedding = {cfg.generator.embedding!r} make model {cfg.model!r} another model (it has "
            f"{'a' if expected[0] else 'no'} CAM grid and the {expected[1]!r} embedding); choose --model "
            f"{' or '.join(matching)}, or put the setting under [models.<name>] of the model it is for"
        )


def build_generator(cfg: GeneratorConfig, height: int, width: int) -> NeRVGenerator:
    return NeRVGenerator(height, width, **dataclasses.asdict(cfg))


def scale_widths(cfg: GeneratorConfig, factor: float, frame_grids: bool = True) -> GeneratorConfig:
    """``cfg`` with every width (block channels, their minimum, stem channels, hidden width and, when
    ``frame_grids``, the channels of each frame grid level) times ``factor``."""

    def width(n: int) -> int:
        return max(1, round(n * factor))

    return dataclasses.replace(
        cfg,
        channels=width(cfg.channels),
        min_channels=width(cfg.min_channels),
        stem_channels=width(cfg.stem_channels),
        stem_hidden=width(cfg.stem_hidden),
        frame_grids=[[nodes, width(channels) if frame_grids else channels] for nodes, channels in cfg.frame_grids],
    )


def size_for_params(
    cfg: GeneratorConfig, height: int, width: int, target: int, frame_grids: bool = True
) -> GeneratorConfig:
    """``cfg`` with its widths scaled to the most parameters the generator can have within ``target``.

    First every width is scaled by one factor, the largest that stays within ``target``, so
    the proportions of the config (stem vs blocks, the channel schedule) are kept and one
    config spans a whole rate range. A width moves in steps of whole channels, and one step
    of every width at once can be 5 % of the model, so then single widths grow by one, each
    time the one that brings the count closest to ``target`` without passing it (see
    ``one_wider``): models of different kinds sized to one target end up with nearly the
    same count. With ``frame_grids`` False the frame grids keep their channels and the
    convolutions take the rest of the budget. An unreachable target is an error.
    """

    def params(sized: GeneratorConfig) -> int:
        return count_parameters(build_generator(sized, height, width))

    low, high = 1e-4, 1.0
    if params(scale_widths(cfg, low, frame_grids)) > target:
        raise CamfieldsError(
            f"--params {target} is below the smallest generator of this config at {width}x{height} "
            f"({params(scale_widths(cfg, low, frame_grids))} parameters: the embedding, grids and 1-channel layers)"
        )
    while params(scale_widths(cfg, high, frame_grids)) <= target and high < 4096:
        low, high = high, high * 2
    for _ in range(40):  # geometric bisection: params(low) <= target < params(high)
        middle = math.sqrt(low * high)
        low, high = (middle, high) if params(scale_widths(cfg, middle, frame_grids)) <= target else (low, middle)
    sized = scale_widths(cfg, low, frame_grids)
    count = params(sized)
    while True:
        counted = [(params(wider), wider) for wider in one_wider(sized, frame_grids)]
        fitting = [(n, wider) for n, wider in counted if count < n <= target]
        if not fitting:
            return sized
        count, sized = max(fitting, key=lambda pair: pair[0])


def one_wider(cfg: GeneratorConfig, frame_grids: bool = True) -> list[GeneratorConfig]:
    """Each config that is ``cfg`` with one width one channel larger, so with more parameters:
    the first block (and the blocks whose schedule derives from it), the minimum block width
    (when a block sits at it), the stem (MLP embedding) or, when ``frame_grids``, one frame
    grid level."""
    replace = dataclasses.replace
    out = [replace(cfg, channels=cfg.channels + 1)]
    if cfg.min_channels in block_channels(cfg.channels, len(cfg.strides), cfg.reduce, cfg.min_channels):
        out.append(replace(cfg, min_channels=cfg.min_channels + 1))
    if cfg.embedding == "mlp":
        out += [replace(cfg, stem_channels=cfg.stem_channels + 1), replace(cfg, stem_hidden=cfg.stem_hidden + 1)]
    elif frame_grids:
        for i, (nodes, channels) in enumerate(cfg.frame_grids):
            levels = [list(level) for level in cfg.frame_grids]
            levels[i] = [nodes, channels + 1]
            out.append(replace(cfg, frame_grids=levels))
    return out


def frame_times(count: int) -> torch.Tensor:
    """Times (T,) of the frames: k / (T - 1)."""
    return torch.arange(count, dtype=torch.float32) / max(count - 1, 1)


class VideoModel(StepCounted):
    """A generator with its training step count; past ``qat_start`` steps it trains through the quantizer.

    With ``dampening`` > 0 the QAT loss adds that weight, ramped up linearly from 0 at
    ``qat_start`` to its full value at ``steps``, times the mean over all weights of their
    squared distance from their levels in steps (``compression.quantize.rounding_distance``).
    With ``rate_weight`` > 0 it also adds that weight times the bits per pixel the weights are
    estimated to take once entropy-coded (``compression.rate``; ``pixels`` of the whole clip),
    so that the fit trades distortion (MSE) against rate at the slope ``rate_weight``.
    """

    def __init__(
        self,
        generator: NeRVGenerator,
        bits: int,
        qat_start: int,
        per_channel: bool = False,
        dampening: float = 0.0,
        steps: int = 0,
        rate_weight: float = 0.0,
        pixels: int = 1,
    ):
        super().__init__()
        self.generator, self.bits, self.qat_start, self.per_channel = generator, bits, qat_start, per_channel
        self.dampening, self.steps, self.rate_weight, self.pixels = dampening, steps, rate_weight, pixels

    def penalty(self, step: int) -> torch.Tensor | None:
        """The QAT terms added to the MSE at training step ``step`` (None when none applies)."""
        if step < self.qat_start or not (self.dampening or self.rate_weight):
            return None
        params = list(self.generator.parameters())
        terms = []
        if self.dampening:
            ramp = min((step + 1 - self.qat_start) / max(self.steps - self.qat_start, 1), 1.0)
            distance = sum(rounding_distance(p, self.bits, self.per_channel) * p.numel() for p in params)
            terms.append(self.dampening * ramp * distance / sum(p.numel() for p in params))
        if self.rate_weight:
            terms.append(self.rate_weight * estimated_rate_bits(params, self.bits, self.per_channel) / self.pixels)
        return sum(terms[1:], terms[0])

    def quantized_parameters(self) -> dict[str, torch.Tensor]:
        return {name: fake_quantize(p, self.bits, self.per_channel) for name, p in self.generator.named_parameters()}

    def forward(self, times: torch.Tensor, quantized: bool) -> torch.Tensor:
        """Frames (N, 3, H, W) at ``times`` (N,), through the quantized weights when ``quantized``."""
        if not quantized:
            return self.generator(times)
        return functional_call(self.generator, self.quantized_parameters(), (times,))


def prune_masks(generator: NeRVGenerator, fraction: float) -> dict[str, torch.Tensor]:
    """Masks keeping the largest ``1 - fraction`` of each convolution weight by magnitude."""
    masks = {}
    for name, p in generator.named_parameters():
        if name.startswith("convs.") and name.endswith("weight") and fraction > 0:
            k = int(p.numel() * fraction)
            threshold = p.detach().abs().flatten().kthvalue(max(k, 1)).values
            masks[name] = p.detach().abs() > threshold
    return masks


class FrameObjective:
    """MSE on random frames; evaluation renders every frame through the quantized weights."""

    def __init__(self, video: torch.Tensor, batch_frames: int, chunk: int = 4):
        self.video = video.permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
        self.times = frame_times(len(video)).to(video.device)
        self.batch_frames, self.chunk = batch_frames, chunk

    def loss(self, model: VideoModel, generator: torch.Generator, shard: Shard) -> tuple[torch.Tensor, torch.Tensor]:
        step = model.count_step()
        batch = torch.randint(len(self.times), (self.batch_frames,), generator=generator)
        index = to_device(shard.take(batch), self.times.device)
        mse = shard.mean((model(self.times[index], step >= model.qat_start) - self.video[index]) ** 2, len(batch))
        penalty = model.penalty(step)
        return (mse if penalty is None else mse + penalty), mse_to_psnr(mse.detach())

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


def quantize_generator(generator: NeRVGenerator, bits: int, per_channel: bool = False) -> list[QuantizedTensor]:
    """Every parameter as symmetric n-bit integers and its steps, in ``named_parameters`` order."""
    tensors = []
    for name, p in generator.named_parameters():
        values, steps = symmetric_integers(p, bits, per_channel)
        tensors.append(QuantizedTensor(name, tuple(p.shape), steps.cpu().numpy(), values.reshape(-1).cpu().numpy()))
    return tensors


def encode(
    path: Path, generator: NeRVGenerator, gen_cfg: GeneratorConfig, bits: int, frames: int, per_channel: bool = False
) -> int:
    """Write the bitstream of a fitted generator; returns the file size in bytes."""
    header = {
        "format": BITSTREAM_FORMAT,
        "width": generator.width,
        "height": generator.height,
        "frames": frames,
        "generator": dataclasses.asdict(gen_cfg),
    }
    return write_bitstream(path, header, bits, quantize_generator(generator, bits, per_channel))


def decoder_from_bitstream(stream: Bitstream) -> tuple[NeRVGenerator, int]:
    """The generator (float32, CPU) and frame count a bitstream describes."""
    header = stream.config
    if not isinstance(header, dict) or header.get("format") != BITSTREAM_FORMAT:
        raise CamfieldsError(f"the bitstream holds {header.get('format')!r}, not a camfields video")
    gen_cfg = from_dict(GeneratorConfig, header["generator"], "bitstream header")
    frames, height, width = header["frames"], header["height"], header["width"]
    if not all(isinstance(v, int) and 0 < v <= 1 << 16 for v in (frames, height, width)):
        raise CamfieldsError("the bitstream header gives an impossible frame count or size")
    generator = build_generator(gen_cfg, height, width)
    params = dict(generator.named_parameters())
    stored = {t.name: t for t in stream.tensors}
    if set(stored) != set(params):
        raise CamfieldsError("the bitstream's tensors do not match the generator its header describes")
    with torch.no_grad():
        for name, p in params.items():
            if stored[name].shape != tuple(p.shape):
                raise CamfieldsError(
                    f"tensor {name} has shape {stored[name].shape}, the generator needs {tuple(p.shape)}"
                )
            p.copy_(torch.from_numpy(stored[name].dequantize()))
    return generator.eval(), frames


@torch.no_grad()
def decode_frames(path: Path, device: torch.device | None = None, chunk: int = 4) -> torch.Tensor:
    """Every frame (T, H, W, 3) in [0, 1] of a bitstream file, rebuilt from the file alone."""
    generator, frames = decoder_from_bitstream(read_bitstream(path))
    generator = generator.to(device or torch.device("cpu"))
    times = frame_times(frames).to(device or torch.device("cpu"))
    out = torch.cat([generator(t).clamp(0, 1) for t in times.split(chunk)])
    return out.permute(0, 2, 3, 1)


def to_8bit(frames: torch.Tensor) -> torch.Tensor:
    """Frames rounded to 8-bit levels (what a player shows), still floats in [0, 1]."""
    return torch.round(frames.clamp(0, 1) * 255.0) / 255.0


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


def load_clip(path: Path, cfg: VideoConfig) -> torch.Tensor:
    """Frames (T, H, W, 3) in [0, 1] of the clip ``cfg`` selects: frame range, centred crop, then resize."""
    size = (cfg.width, cfg.height) if cfg.width else None
    crop = (cfg.crop_width, cfg.crop_height) if cfg.crop_width else None
    return read_video(path, cfg.start, cfg.frames or None, cfg.stride, size, crop)


def prepare_fit(cfg: VideoConfig, frames: int, height: int, width: int) -> tuple[VideoConfig, VideoModel]:
    """The fit's config with its generator sized (``target_params``) and its training steps set,
    and its model (seeded with ``cfg.train.seed``, on the CPU) for a clip of ``frames`` frames of
    ``height`` x ``width``."""
    gen_cfg = cfg.generator
    if cfg.target_params:
        gen_cfg = size_for_params(gen_cfg, height, width, cfg.target_params, cfg.scale_frame_grids)
    steps_per_epoch = math.ceil(frames / cfg.batch_frames)
    cfg = dataclasses.replace(
        cfg, generator=gen_cfg, train=dataclasses.replace(cfg.train, steps=cfg.epochs * steps_per_epoch)
    )
    torch.manual_seed(cfg.train.seed)
    model = VideoModel(
        build_generator(gen_cfg, height, width),
        cfg.bits,
        cfg.train.steps - int(round(cfg.qat_fraction * cfg.epochs)) * steps_per_epoch,
        cfg.quant_steps == "channel",
        cfg.qat_dampening,
        cfg.train.steps,
        cfg.rate_weight,
        frames * height * width,
    )
    return cfg, model


def fit_video(
    path: Path, cfg: VideoConfig, out_dir: Path, device: str = "auto", resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Fit, quantize, encode and decode a clip; writes ``video.camf``, ``metrics.json`` and a preview.

    Metrics: PSNR / MS-SSIM (8-bit frames) of the decoded bitstream, PSNR of the float
    model, bits per pixel from the file's bytes, an entropy estimate (labelled), parameters,
    fit seconds, encoding and decoding frames per second, and the device. Under torchrun
    the frames of every batch are split across the ranks; rank 0 encodes and writes, and
    every rank returns the metrics.
    """
    cfg.validate()
    torch_device = distributed.init(device)
    video = load_clip(Path(path), cfg)
    frames, height, width, _ = video.shape
    cfg, model = prepare_fit(cfg, frames, height, width)
    gen_cfg, qat_start, per_channel = cfg.generator, model.qat_start, model.per_channel
    out_dir = Path(out_dir)
    distributed.run_on_main(lambda: prepare_run_dir(out_dir, cfg, resume))
    shard = distributed.current()
    if cfg.batch_frames < shard.world:
        raise CamfieldsError(
            f"batch_frames = {cfg.batch_frames} is fewer than the {shard.world} processes: "
            "every rank needs a frame per step; raise batch_frames or start fewer processes"
        )
    model = model.to(torch_device)
    masks: dict[str, torch.Tensor] = {}

    def on_step(step: int, model: VideoModel) -> None:
        nonlocal masks
        if cfg.prune and step >= qat_start and not masks:  # also after a resume past the start
            masks = prune_masks(model.generator, cfg.prune)
        if masks:
            params = dict(model.generator.named_parameters())
            with torch.no_grad():
                for name, mask in masks.items():
                    params[name].mul_(mask)

    objective = FrameObjective(video.to(torch_device), cfg.batch_frames)
    t0 = time.perf_counter()
    result = train(
        model,
        objective,
        cfg.train,
        out_dir,
        resume=resume,
        progress=progress,
        description=f"{Path(path).stem} {cfg.model}",
        on_step=on_step,
        shard=shard,
    )
    if not shard.main:
        return distributed.broadcast(None)

    def say(message: str) -> None:
        if progress:
            announce(f"{Path(path).stem} {cfg.model}: {message}")

    source = objective.video.permute(0, 2, 3, 1)  # (T, H, W, 3) on the fit's device: metrics run there
    say(f"rendering {frames} frames with float weights, rounding the head")
    psnr_float = mean_psnr(to_8bit(objective.render(model, quantized=False).permute(0, 2, 3, 1)), source)
    head_moved = round_head_for_clip(model, objective)
    bitstream = out_dir / "video.camf"
    say(f"encoding {bitstream}")
    size = encode(bitstream, model.generator, gen_cfg, cfg.bits, frames, per_channel)
    encode_seconds = time.perf_counter() - t0
    say(f"decoding {bitstream} ({size} bytes) and measuring PSNR / MS-SSIM")
    t1 = time.perf_counter()
    decoded = decode_frames(bitstream, torch_device)
    decode_seconds = time.perf_counter() - t1
    stream = read_bitstream(bitstream)
    save_png(out_dir / "frame_0000.png", decoded[0])
    metrics: dict[str, Any] = {
        "video": str(path),
        "model": cfg.model,
        "width": width,
        "height": height,
        "frames": frames,
        "epochs": cfg.epochs,
        "bits": cfg.bits,
        "prune": cfg.prune,
        "quant_steps": cfg.quant_steps,
        **quality(decoded, source),
        "psnr_float": psnr_float,
        "psnr_nearest_rounding": result.evaluation.metrics["psnr"],  # every weight rounded to its nearest level
        "head_weights_rounded_other_way": head_moved,
        "params": count_parameters(model.generator),
        "bytes": size,
        "bpp": 8 * size / (width * height * frames),
        "bpp_entropy_estimate": stream.estimated_payload_bits / (width * height * frames),
        "seconds": round(result.seconds, 2),
        "ranks": shard.world,
        "resumed_from": result.resumed_from,
        "encode_fps": frames / encode_seconds if not result.resumed_from else None,
        "decode_fps": frames / decode_seconds,
        "device": device_name(torch_device),
    }
    write_json(out_dir / "metrics.json", metrics)
    return distributed.broadcast(metrics)


def write_frames(frames: torch.Tensor, out: Path, fps: int = 25) -> None:
    """Frames (T, H, W, 3) to ``out``: an mp4 when it ends in .mp4, else a folder of PNGs."""
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_video(out, frames, fps)
        return
    out.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(out / f"frame_{index:04d}.png", frame)
