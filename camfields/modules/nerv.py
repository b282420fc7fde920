"""NeRV-style frame generators: a frame time in [0, 1] in, a whole (3, H, W) frame out.

The time becomes a (C_0, h_0, w_0) feature map in one of two ways: NeRV's positional
encoding (``b = 1.25``) through an MLP stem, or FFNeRV's multi-resolution temporal grids
(feature maps stored at a few time resolutions, read by linear interpolation in time and
concatenated over channels). Then every block upsamples: conv 3x3 to ``C_{l+1} s^2``
channels, pixel shuffle by the stride ``s``, then GELU. With CAM (the CAM paper's FFNeRV
setting) each block normalises its output per frame and channel (instance norm, no affine)
and scales and shifts it per channel by ``gamma_l(t), beta_l(t)`` read from a 1D grid over
time (``ops.conv_modulate``); the grid stores deltas around (1, 0) and starts at zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.grids import DenseGrid
from camfields.ops.conv_modulate import CONV_NORMS, conv_modulate

CAM_NORMS = CONV_NORMS
EMBEDDINGS = ("mlp", "grids")
#: bounds of a generator config: widths and node counts, blocks (and grid levels), one block's stride
MAX_WIDTH, MAX_BLOCKS, MAX_STRIDE = 1 << 16, 16, 64


class TimeEmbedding(nn.Module):
    """NeRV's embedding of t in [0, 1]: [sin(b^i pi t), cos(b^i pi t)] for i < levels: (N, 2 * levels)."""

    def __init__(self, levels: int = 80, base: float = 1.25):
        super().__init__()
        self.out_dim = 2 * levels
        self.register_buffer("freqs", math.pi * base ** torch.arange(levels, dtype=torch.float32))

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        phase = times[:, None] * self.freqs
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class FrameGrids(nn.Module):
    """FFNeRV's multi-resolution temporal grids: times (N,) in [0, 1] -> feature maps (N, sum C_l, h, w).

    Level l stores ``nodes_l`` maps of (C_l, h, w) spread evenly over [0, 1] (a ``DenseGrid``
    over time, so it trains in the grid learning-rate group); a time reads the two nearest
    maps of each level, linearly interpolated. Coarse levels hold what changes slowly, fine
    levels the detail of single frames.
    """

    def __init__(self, levels: Sequence[Sequence[int]], height: int, width: int, init_scale: float = 0.1):
        super().__init__()
        if not levels or any(len(level) != 2 or min(level) < 1 for level in levels):
            raise CamfieldsError(f"frame grid levels must be [nodes, channels] pairs of positive ints, got {levels}")
        self.shape = (height, width)
        self.levels = nn.ModuleList(
            DenseGrid((nodes,), channels * height * width, init_scale) for nodes, channels in levels
        )
        self.out_channels = sum(channels for _, channels in levels)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        coords = times[:, None] * 2.0 - 1.0
        return torch.cat([level(coords).view(len(times), -1, *self.shape) for level in self.levels], dim=1)


def block_channels(first: int, blocks: int, reduce: float, minimum: int) -> list[int]:
    """Output channels of each block: ``first`` divided by ``reduce`` per block, at least ``minimum``."""
    return [max(minimum, int(round(first / reduce**i))) for i in range(blocks)]


class NeRVGenerator(nn.Module):
    """Frames (N, 3, H, W) in [0, 1] from frame times (N,) in [0, 1].

    Args:
        height, width: frame size; each must be divisible by ``prod(strides)``.
        strides: upsampling factor of each block, e.g. (5, 2, 2, 2, 2) for 1280x720.
        channels: output channels of the first block; later blocks divide by ``reduce``.
        stem_channels: channels of the stem's feature map (C_0) when ``embedding`` is "mlp".
        stem_hidden: width of the stem MLP's hidden layer.
        embedding: "mlp" (NeRV: positional encoding and MLP stem) or "grids" (FFNeRV's
            multi-resolution temporal grids, ``frame_grids``; C_0 is their channel sum).
        frame_grids: [nodes, channels] per temporal grid level, for ``embedding = "grids"``.
        reduce, min_channels: channel schedule of the blocks (see ``block_channels``).
        embedding_levels: frequencies of the time embedding.
        time_grid: nodes of the CAM temporal grid; 0 builds the plain generator.
        cam_norm: what CAM normalises before its scale and shift: "instance" (per frame and
            channel, the CAM paper's setting) or "none".
    """

    def __init__(
        self,
        height: int,
        width: int,
        strides: Sequence[int],
        channels: int = 64,
        stem_channels: int = 64,
        stem_hidden: int = 256,
        reduce: float = 1.2,
        min_channels: int = 12,
        embedding_levels: int = 80,
        time_grid: int = 0,
        cam_norm: str = "instance",
        embedding: str = "mlp",
        frame_grids: Sequence[Sequence[int]] = ((8, 16), (32, 4)),
    ):
        super().__init__()
        if cam_norm not in CAM_NORMS:
            raise CamfieldsError(f"cam_norm must be one of {', '.join(CAM_NORMS)}, got {cam_norm!r}")
        if embedding not in EMBEDDINGS:
            raise CamfieldsError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")
        self.cam_norm = cam_norm
        scale = math.prod(strides)
        if not strides or any(s < 1 for s in strides) or height % scale or width % scale:
            raise CamfieldsError(
                f"frame size {width}x{height} is not divisible by the product {scale} of the strides {list(strides)}"
            )
        self.height, self.width = height, width
        self.base = (height // scale, width // scale)
        if embedding == "grids":
            self.embedding: nn.Module = nn.Identity()  # the grids read the time itself
            self.stem: nn.Module = FrameGrids(frame_grids, *self.base)
            stem_channels = self.stem.out_channels
        else:
            self.embedding = TimeEmbedding(embedding_levels)
            self.stem = nn.Sequential(
                nn.Linear(self.embedding.out_dim, stem_hidden),
                nn.GELU(),
                nn.Linear(stem_hidden, stem_channels * self.base[0] * self.base[1]),
                nn.GELU(),
            )
        self.stem_channels = stem_channels
        self.channels = block_channels(channels, len(strides), reduce, min_channels)
        inputs = [stem_channels, *self.channels[:-1]]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out * s * s, 3, padding=1) for c_in, c_out, s in zip(inputs, self.channels, strides)
        )
        self.strides = list(strides)
        self.head = nn.Conv2d(self.channels[-1], 3, 1)
        # built last, so a seed gives the same convolutions with and without CAM
        self.time_grid = DenseGrid((time_grid,), 2 * sum(self.channels)) if time_grid else None
        if self.time_grid is not None:
            self.time_grid.modulation = True

    def modulation(self, times: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block, (gamma, beta), each (N, C_l), at frame times (N,)."""
        values = self.time_grid(times[:, None] * 2.0 - 1.0)  # (N, 2 * sum C)
        out, start = [], 0
        for c in self.channels:
            gamma, beta = values[:, start : start + c], values[:, start + c : start + 2 * c]
            out.append((1.0 + gamma, beta))
            start += 2 * c
        return out

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(times)))

    def features(self, times: torch.Tensor) -> torch.Tensor:
        """The last block's output (N, C_last, H, W) at frame times (N,): the 1x1 head's input."""
        x = self.stem(self.embedding(times)).view(len(times), self.stem_channels, *self.base)
        mods = self.modulation(times) if self.time_grid is not None else [None] * len(self.convs)
        for conv, stride, mod in zip(self.convs, self.strides, mods):
            x = F.pixel_shuffle(conv(x), stride)
            x = F.gelu(x) if mod is None else conv_modulate(x, *mod, norm=self.cam_norm, activation="gelu")
        return x


@dataclass
class GeneratorConfig:
    """Sizes of a NeRV generator (see ``NeRVGenerator``); ``time_grid`` 0 = no CAM."""

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

    def validate(self, where: str = "generator") -> None:
        """Check choices and bound every size, in one sentence naming ``where`` (a config or a file)."""
        if self.cam_norm not in CAM_NORMS or self.embedding not in EMBEDDINGS:
            raise CamfieldsError(
                f"{where}: cam_norm must be one of {', '.join(CAM_NORMS)} and embedding one of "
                f"{', '.join(EMBEDDINGS)}, got {self.cam_norm!r} and {self.embedding!r}"
            )
        widths = {"channels": self.channels, "stem_channels": self.stem_channels, "stem_hidden": self.stem_hidden}
        widths |= {"min_channels": self.min_channels, "embedding_levels": self.embedding_levels}
        for name, value in widths.items():
            if not 1 <= value <= MAX_WIDTH:
                raise CamfieldsError(f"{where}: {name} must be from 1 to {MAX_WIDTH}, got {value}")
        if not 0 <= self.time_grid <= MAX_WIDTH:
            raise CamfieldsError(f"{where}: time_grid must be from 0 (no CAM) to {MAX_WIDTH}, got {self.time_grid}")
        if not 1 <= len(self.strides) <= MAX_BLOCKS or not all(1 <= s <= MAX_STRIDE for s in self.strides):
            raise CamfieldsError(f"{where}: strides must be 1 to {MAX_BLOCKS} factors from 1 to {MAX_STRIDE}")
        if not 0 < self.reduce < MAX_WIDTH:
            raise CamfieldsError(f"{where}: reduce must be a positive number, got {self.reduce}")
        levels = self.frame_grids
        if not 1 <= len(levels) <= MAX_BLOCKS or any(
            len(lv) != 2 or not 1 <= min(lv) <= max(lv) <= MAX_WIDTH for lv in levels
        ):
            raise CamfieldsError(
                f"{where}: frame_grids must be 1 to {MAX_BLOCKS} [nodes, channels] pairs from 1 to {MAX_WIDTH}"
            )


def build_generator(cfg: GeneratorConfig, height: int, width: int) -> NeRVGenerator:
    """The generator ``cfg`` describes for frames of ``height`` x ``width``."""
    return NeRVGenerator(height, width, **dataclasses.asdict(cfg))
