"""A hash grid backed by tiny-cuda-nn (``tinycudann``, optional, built from source, GPU only).

Same settings as ``camfields.modules.HashGrid`` ("concat" levels), but a different
parameterisation, so its outputs are **not** those of ``HashGrid`` for any mapping of tables:

* coordinates: camfields takes [-1, 1]; tcnn takes u = (x + 1) / 2 in [0, 1] (done here);
* nodes: camfields level l has ``R_l = floor(base * growth**l)`` nodes per axis with
  align_corners (position ``u * (R_l - 1)``, -1 and +1 on the first and last node);
  tcnn uses the scale ``s_l = base * growth**l - 1`` (not floored) and the position
  ``u * s_l + 0.5``: its nodes sit half a cell off the domain's edges and a level has
  ``ceil(s_l) + 1`` nodes per axis (plus rounding of the level's size);
* table: tcnn keeps every level in one flat ``params`` vector, level sizes rounded up to a
  multiple of 8, dense while the level fits and hashed with the same primes beyond;
  features per level must be 1, 2, 4 or 8; its outputs are float16 by default and are
  returned here as float32.

It is a ``FeatureGrid`` so that the optimizer puts its table in the grid learning-rate group.
"""

from __future__ import annotations

import torch
from torch import nn

from camfields.errors import CamfieldsError
from camfields.modules.grids import FeatureGrid
from camfields.ops.interp import check_coords

#: Features per level tcnn's hash grid supports.
TCNN_FEATURES = (1, 2, 4, 8)


def import_tinycudann():
    """The ``tinycudann`` module, or one CamfieldsError saying why it cannot be used."""
    try:
        import tinycudann
    except ImportError as e:  # not installed, or built against another torch / CUDA
        raise CamfieldsError(f"backend='tcnn' needs the tinycudann package, which cannot be imported: {e}") from None
    if not torch.cuda.is_available():
        raise CamfieldsError("backend='tcnn' needs a CUDA GPU; none is available")
    return tinycudann


class TcnnHashGrid(FeatureGrid):
    """``tinycudann.Encoding`` of type HashGrid: (N, in_dim) in [-1, 1] -> (N, levels * features).

    Args: as ``HashGrid`` (reduce is "concat"); ``init_scale`` redraws tcnn's table uniform in
    [-init_scale, init_scale].
    """

    def __init__(
        self,
        in_dim: int,
        levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        growth: float = 1.5,
        init_scale: float = 1e-4,
    ):
        super().__init__()
        if features_per_level not in TCNN_FEATURES:
            raise CamfieldsError(
                f"tinycudann's hash grid takes 1, 2, 4 or 8 features per level, not {features_per_level}"
            )
        tcnn = import_tinycudann()
        config = {
            "otype": "HashGrid",
            "n_levels": levels,
            "n_features_per_level": features_per_level,
            "log2_hashmap_size": log2_table_size,
            "base_resolution": base_resolution,
            "per_level_scale": growth,
        }
        self.in_dim = in_dim
        self.out_features = levels * features_per_level
        self.encoding = tcnn.Encoding(in_dim, config)
        with torch.no_grad():
            self.encoding.params.uniform_(-init_scale, init_scale)

    @property
    def table(self) -> nn.Parameter:  # type: ignore[override]
        """tcnn's flat parameter vector (every level, tcnn's layout)."""
        return self.encoding.params

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        check_coords(coords, self.in_dim, "coordinates of the tcnn hash grid")
        if not coords.is_cuda:
            raise CamfieldsError("backend='tcnn' needs CUDA tensors; these coordinates are on the CPU")
        unit = ((coords.float().clamp(-1.0, 1.0) + 1.0) * 0.5).contiguous()
        return self.encoding(unit).float()
