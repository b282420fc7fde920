"""Functional ops: pure tensor functions with a backend choice."""

from camfields.ops.interp import check_coords, interpolate_dense
from camfields.ops.modulate import ACTIVATIONS, NORMS, modulate, normalize
from camfields.ops.sync import set_debug

__all__ = ["ACTIVATIONS", "NORMS", "check_coords", "interpolate_dense", "modulate", "normalize", "set_debug"]
