"""camfields: neural fields with coordinate-aware modulation (CAM)."""

from camfields.errors import CamfieldsError
from camfields.fields import FieldConfig, build_field
from camfields.modules import (
    CAMMLP,
    DenseGrid,
    FeatureGrid,
    FourierFeatures,
    GridModulation,
    HashGrid,
    HashGridEncoding,
    IdentityEncoding,
    PlaneGrid,
    SinusoidalEncoding,
)
from camfields.ops import modulate
from camfields.training import CoordinateRegression, TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "CAMMLP",
    "CamfieldsError",
    "CoordinateRegression",
    "DenseGrid",
    "FeatureGrid",
    "FieldConfig",
    "FourierFeatures",
    "GridModulation",
    "HashGrid",
    "HashGridEncoding",
    "IdentityEncoding",
    "PlaneGrid",
    "SinusoidalEncoding",
    "TrainConfig",
    "build_field",
    "modulate",
    "train",
]
