"""Sizing a NeRV generator to a parameter budget by scaling its widths."""

from __future__ import annotations

import dataclasses
import math

from camfields.errors import CamfieldsError
from camfields.fields import count_parameters
from camfields.modules.nerv import GeneratorConfig, block_channels, build_generator


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
