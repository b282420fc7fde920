"""Field configs and the builder that turns one into a CAMMLP."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from camfields.config import check_choice
from camfields.errors import CamfieldsError
from camfields.modules import (
    CAMMLP,
    DenseGrid,
    FeatureGrid,
    FourierFeatures,
    HashGrid,
    HashGridEncoding,
    IdentityEncoding,
    PlaneGrid,
    PyramidEncoding,
    SinusoidalEncoding,
)

#: bounds of a field config: widths and feature counts, depths and level counts, log2 hash table
#: entries, nodes per grid axis (and of a dense grid in all)
MAX_WIDTH, MAX_DEPTH, MAX_LOG2_TABLE, MAX_GRID_NODES = 1 << 14, 64, 26, 1 << 24


@dataclass
class HashGridConfig:
    """Multi-resolution hash grid settings (see ``camfields.modules.HashGrid``)."""

    levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    growth: float = 1.5


@dataclass
class PyramidConfig:
    """Latent pyramid settings (see ``camfields.modules.PyramidEncoding``)."""

    levels: int = 6
    features: int = 1
    #: the finest level's nodes per axis; empty in a preset: the image task sets the image's
    #: width and height (one node per pixel) before the fit
    resolution: list[int] = field(default_factory=list)


@dataclass
class EncodingConfig:
    """Input encoding: kind is identity, sinusoidal, fourier, hashgrid or pyramid."""

    kind: str = "fourier"
    num_features: int = 256  # fourier: random frequencies (output 2x)
    sigma: float = 10.0  # fourier: frequency std, cycles per unit of [0, 1]
    num_freqs: int = 10  # sinusoidal: octaves
    hash: HashGridConfig = field(default_factory=HashGridConfig)
    pyramid: PyramidConfig = field(default_factory=PyramidConfig)


@dataclass
class ModulationConfig:
    """Modulation grid: kind is none, dense, planes or hash."""

    grid: str = "none"
    resolution: list[int] = field(default_factory=lambda: [32, 32])  # dense / planes: nodes per axis
    per_channel: bool = False
    layers: list[int] | None = None  # modulated hidden layers; None = all
    combine: str = "product"  # planes: "product" or "sum"
    hash: HashGridConfig = field(default_factory=lambda: HashGridConfig(levels=8, log2_table_size=14))


@dataclass
class FieldConfig:
    """Everything needed to build a CAMMLP for a given input and output dimension."""

    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    hidden: int = 256
    depth: int = 3
    skips: list[int] = field(default_factory=list)  # hidden layers that also receive the encoded input
    activation: str = "relu"
    output_activation: str = "sigmoid"
    norm: str = "none"
    groups: int = 1
    modulation: ModulationConfig = field(default_factory=ModulationConfig)

    def validate(self) -> None:
        """Check the choices (encoding kind, modulation grid) and bound every size, once, where a config
        is loaded (a typo such as ``hidden = 100000000`` is one sentence, not an allocation failure)."""
        check_choice(self.encoding.kind, ENCODINGS, "encoding")
        check_choice(self.modulation.grid, ["none", *GRIDS], "modulation grid")
        enc, mod = self.encoding, self.modulation
        sizes = {
            "hidden": (self.hidden, 1, MAX_WIDTH),
            "depth": (self.depth, 1, MAX_DEPTH),
            "groups": (self.groups, 1, self.hidden),
            "encoding.num_features": (enc.num_features, 1, MAX_WIDTH),
            "encoding.num_freqs": (enc.num_freqs, 0, MAX_DEPTH),
        }
        for where, hash_cfg in (("encoding.hash", enc.hash), ("modulation.hash", mod.hash)):
            sizes |= {
                f"{where}.levels": (hash_cfg.levels, 1, MAX_DEPTH),
                f"{where}.features_per_level": (hash_cfg.features_per_level, 1, MAX_DEPTH),
                f"{where}.log2_table_size": (hash_cfg.log2_table_size, 1, MAX_LOG2_TABLE),
                f"{where}.base_resolution": (hash_cfg.base_resolution, 1, MAX_GRID_NODES),
            }
        sizes |= {f"modulation.resolution[{i}]": (n, 1, MAX_GRID_NODES) for i, n in enumerate(mod.resolution)}
        sizes |= {
            "encoding.pyramid.levels": (enc.pyramid.levels, 1, MAX_DEPTH),
            "encoding.pyramid.features": (enc.pyramid.features, 1, MAX_DEPTH),
        }
        pyramid = enc.pyramid.resolution
        sizes |= {f"encoding.pyramid.resolution[{i}]": (n, 1, MAX_GRID_NODES) for i, n in enumerate(pyramid)}
        for name, (value, low, high) in sizes.items():
            if not low <= value <= high:
                raise CamfieldsError(f"{name} must be from {low} to {high:,}, got {value:,}")
        if enc.kind == "pyramid" and math.prod(pyramid) > MAX_GRID_NODES:
            raise CamfieldsError(f"a latent pyramid of {pyramid} nodes has over {MAX_GRID_NODES:,} at its finest level")
        if mod.grid == "dense" and math.prod(mod.resolution) > MAX_GRID_NODES:
            raise CamfieldsError(
                f"a dense modulation grid of {mod.resolution} has more than {MAX_GRID_NODES:,} nodes; "
                "use planes or a hash grid"
            )


def _hash_kwargs(cfg: HashGridConfig) -> dict:
    return dict(
        levels=cfg.levels,
        features_per_level=cfg.features_per_level,
        log2_table_size=cfg.log2_table_size,
        base_resolution=cfg.base_resolution,
        growth=cfg.growth,
    )


ENCODINGS: dict[str, Callable[[EncodingConfig, int], nn.Module]] = {
    "identity": lambda cfg, d: IdentityEncoding(d),
    "sinusoidal": lambda cfg, d: SinusoidalEncoding(d, cfg.num_freqs),
    "fourier": lambda cfg, d: FourierFeatures(d, cfg.num_features, cfg.sigma),
    "hashgrid": lambda cfg, d: HashGridEncoding(d, **_hash_kwargs(cfg.hash)),
    "pyramid": lambda cfg, d: _pyramid(cfg.pyramid, d),
}


def _pyramid(cfg: PyramidConfig, in_dim: int) -> PyramidEncoding:
    if len(cfg.resolution) != in_dim:
        raise CamfieldsError(
            f"encoding.pyramid.resolution must give the finest level's nodes along each of the {in_dim} "
            f"input axes, got {cfg.resolution} (the image task sets it to the image's width and height)"
        )
    return PyramidEncoding(cfg.resolution, cfg.levels, cfg.features)


GRIDS: dict[str, Callable[[ModulationConfig, int], Callable[[int], FeatureGrid]]] = {
    "dense": lambda cfg, d: functools.partial(DenseGrid, cfg.resolution),
    "planes": lambda cfg, d: functools.partial(PlaneGrid, cfg.resolution, combine=cfg.combine),
    "hash": lambda cfg, d: (
        lambda features: HashGrid(
            d, reduce="sum", init_scale=0.0, **{**_hash_kwargs(cfg.hash), "features_per_level": features}
        )
    ),
}


def build_encoding(cfg: EncodingConfig, in_dim: int) -> nn.Module:
    """The input encoding described by ``cfg`` (validated) for ``in_dim``-dimensional coordinates."""
    return ENCODINGS[cfg.kind](cfg, in_dim)


def build_mlp(
    cfg: FieldConfig, in_dim: int, out_dim: int, encoding: nn.Module | None, mod_dim: int | None = None
) -> CAMMLP:
    """The CAMMLP of ``cfg`` (validated) with a given input encoding (``cfg.encoding`` is not used).

    Args:
        cfg: the field config (widths, norm, modulation, activations).
        in_dim: dimension of the input (coordinates, or features when ``encoding`` is None).
        out_dim: output channels.
        encoding: module applied to the input first, or None.
        mod_dim: dimension of the modulation coordinates (default: ``in_dim``);
            for dense and plane grids it must equal ``len(cfg.modulation.resolution)``,
            for hash grids it only sets the input dimension.
    """
    mod, mod_dim = cfg.modulation, mod_dim or in_dim
    if mod.grid in ("dense", "planes") and len(mod.resolution) != mod_dim:
        raise CamfieldsError(
            f"modulation.resolution {mod.resolution} has {len(mod.resolution)} axes but the "
            f"modulation coordinates have {mod_dim}"
        )
    return CAMMLP(
        in_dim,
        out_dim,
        hidden=cfg.hidden,
        depth=cfg.depth,
        encoding=encoding,
        grid=None if mod.grid == "none" else GRIDS[mod.grid](mod, mod_dim),
        per_channel=mod.per_channel,
        modulated_layers=mod.layers,
        skips=cfg.skips,
        norm=cfg.norm,
        groups=cfg.groups,
        activation=cfg.activation,
        output_activation=cfg.output_activation,
    )


def build_field(cfg: FieldConfig, in_dim: int, out_dim: int, mod_dim: int | None = None) -> CAMMLP:
    """Build the CAMMLP described by ``cfg``, its input encoded by ``cfg.encoding``.

    Args:
        cfg: the field config.
        in_dim: dimension of the input coordinates.
        out_dim: output channels.
        mod_dim: dimension of the modulation coordinates (see ``build_mlp``).
    """
    cfg.validate()
    return build_mlp(cfg, in_dim, out_dim, build_encoding(cfg.encoding, in_dim), mod_dim)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (fixed buffers such as Fourier projections excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
