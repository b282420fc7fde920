"""nn.Modules a user composes into a field: grids, encodings, modulation, CAMMLP."""

from camfields.modules.encodings import (
    FourierFeatures,
    HashGridEncoding,
    IdentityEncoding,
    PyramidEncoding,
    SinusoidalEncoding,
)
from camfields.modules.grids import DenseGrid, FeatureGrid, HashGrid, PlaneGrid
from camfields.modules.mlp import CAMMLP
from camfields.modules.modulation import GridModulation, modulation_features

__all__ = [
    "CAMMLP",
    "DenseGrid",
    "FeatureGrid",
    "FourierFeatures",
    "GridModulation",
    "HashGrid",
    "HashGridEncoding",
    "IdentityEncoding",
    "PlaneGrid",
    "PyramidEncoding",
    "SinusoidalEncoding",
    "modulation_features",
]
