"""A video fit's settings: the typed config, the model presets and their identity rules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from camfields.compression.config import CompressionConfig
from camfields.config import Presets, check_choice, to_dict
from camfields.errors import CamfieldsError
from camfields.modules.nerv import EMBEDDINGS, GeneratorConfig
from camfields.training import TrainConfig


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
    prune: float = 0.0  # fraction of each convolution's weights zeroed by magnitude before QAT
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    #: the bitstream's weight depth (grids included) and QAT: the last ``qat_fraction`` of the epochs
    #: train through the quantizer (``compression.config``)
    compression: CompressionConfig = dataclasses.field(default_factory=lambda: CompressionConfig(qat_fraction=0.2))
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(lr=5e-3, schedule="cosine", final_lr_ratio=0.01, checkpoint_every=1000)
    )

    #: settings that run folders of earlier versions recorded at the top (``run_dir.upgraded``)
    LEGACY_KEYS: ClassVar[dict[str, str]] = {
        name: f"compression.{name}" for name in ("bits", "qat_fraction", "qat_dampening", "rate_weight", "quant_steps")
    }

    def validate(self) -> None:
        check_choice(self.model, PRESETS, "model")
        check_choice(self.generator.embedding, EMBEDDINGS, "embedding")
        if min(self.epochs, self.batch_frames, self.stride) < 1 or min(self.start, self.frames) < 0:
            raise CamfieldsError("epochs, batch_frames and stride must be >= 1; start and frames >= 0")
        if not 0 <= self.prune < 1:
            raise CamfieldsError(f"prune must be in [0, 1), got {self.prune}")
        self.compression.validate()
        if (self.width > 0) != (self.height > 0) or min(self.width, self.height) < 0:
            raise CamfieldsError("give both width and height (or neither, for the video's own size)")
        if (self.crop_width > 0) != (self.crop_height > 0) or min(self.crop_width, self.crop_height) < 0:
            raise CamfieldsError("give both crop_width and crop_height as positive sizes (or neither, for no crop)")
        self.generator.validate("[generator]")
        self.train.validate()


#: the plain NeRV generator and the same with CAM (a 60-node per-channel temporal grid); FFNeRV's
#: multi-resolution temporal grids as the embedding, without and with CAM (30 nodes, the CAM
#: paper's compression setting)
PRESETS = Presets(VideoConfig, default="cam")


@PRESETS.register("nerv")
def nerv() -> dict[str, Any]:
    return {"generator": {"time_grid": 0}}


@PRESETS.register("cam")
def cam() -> dict[str, Any]:
    return {"generator": {"time_grid": 60}}


@PRESETS.register("ffnerv")
def ffnerv() -> dict[str, Any]:
    return {"generator": {"embedding": "grids", "time_grid": 0}}


@PRESETS.register("ffnerv_cam")
def ffnerv_cam() -> dict[str, Any]:
    return {"generator": {"embedding": "grids", "time_grid": 30}}


def resolve_config(
    model: str | None = None, config: str | None = None, overrides: dict[str, Any] | None = None
) -> VideoConfig:
    """Layer the defaults, the model preset, a config file (path or ``scenes/`` preset) and overrides;
    settings that would turn the model into another preset are refused (``check_model_identity``)."""
    cfg = PRESETS.resolve(model, config, overrides)
    check_model_identity(cfg, {name: PRESETS.settings(name) for name in PRESETS}, config)
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
