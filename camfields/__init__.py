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
    PyramidEncoding,
    SinusoidalEncoding,
)
from camfields.ops import modulate

__version__ = "0.1.0"

#: names served from ``camfields.training`` on first use, so that code which never trains
#: (decoding a file) does not import the training loop, TensorBoard or the metrics
_TRAINING = ("CoordinateRegression", "TrainConfig", "train")


def __getattr__(name: str):
    if name in _TRAINING:
        import camfields.training

        return getattr(camfields.training, name)
    raise AttributeError(f"module 'camfields' has no attribute {name!r}")


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
    "PyramidEncoding",
    "SinusoidalEncoding",
    "TrainConfig",
    "build_field",
    "modulate",
    "train",
]
