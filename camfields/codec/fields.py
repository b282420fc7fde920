"""What every field codec shares: which of a model's tensors a file stores and at what bit depth,
their symmetric integers, putting them back into a model, and checking a file's tensors against
the model its header describes before anything is allocated.

A file stores every parameter at the weights' bit depth, the buffers a module's constructor
draws at random (``STORED_BUFFERS``: a Fourier projection, at 16 bits) and state a renderer
needs that training produced (an occupancy grid's cells, 0 / 1 at 2 bits). Buffers that only
training reads (``TRAINING_BUFFERS``) are left as the decoder builds them; every other buffer is
derived from the config and rebuilt by the decoder (``check_derived_buffers`` makes sure).

Example::

    >>> from camfields.fields import FieldConfig, EncodingConfig, build_field
    >>> model = build_field(FieldConfig(encoding=EncodingConfig("fourier", num_features=4), hidden=8), 2, 3)
    >>> stored_bits(model, 8)["encoding.proj"], len(quantize_state(model, 8)) == len(stored_bits(model, 8))
    (16, True)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camfields.codec.bitstream import Bitstream, QuantizedTensor, check_layout
from camfields.compression.context import context_widths
from camfields.compression.quantize import symmetric_integers, symmetric_levels
from camfields.errors import CamfieldsError
from camfields.modules import FourierFeatures
from camfields.render.occupancy import OccupancyGrid

#: buffers a file stores, by module type, with their bit depth: a Fourier projection's random
#: frequencies (their rounding moves every feature's phase, so they keep 16 bits) and an
#: occupancy grid's cells (booleans, stored exactly as 0 / 1)
STORED_BUFFERS: dict[type[nn.Module], dict[str, int]] = {
    FourierFeatures: {"proj": 16},
    OccupancyGrid: {"occupied": 2},
}
#: buffers only training reads (an occupancy grid's running densities): not stored, left as built
TRAINING_BUFFERS: dict[type[nn.Module], tuple[str, ...]] = {OccupancyGrid: ("density",)}
#: weight bit depths a field file holds (1 bit has no level but 0)
MIN_BITS, MAX_BITS = 2, 16


def _buffers(model: nn.Module, kinds: dict[type[nn.Module], Any]) -> dict[str, tuple[type[nn.Module], str]]:
    """``state_dict`` keys of the buffers ``kinds`` names for the model's modules (by module type),
    each with its module's type and its own name."""
    return {
        f"{prefix}.{name}" if prefix else name: (type(module), name)
        for prefix, module in model.named_modules()
        for name in kinds.get(type(module), ())
    }


def stored_bits(model: nn.Module, bits: int) -> dict[str, int]:
    """Every tensor a file stores (``state_dict`` keys, in its order) with its bit depth: the
    parameters at ``bits``, the ``STORED_BUFFERS`` at theirs."""
    buffers = {key: STORED_BUFFERS[kind][name] for key, (kind, name) in _buffers(model, STORED_BUFFERS).items()}
    depths = {name: bits for name, _ in model.named_parameters()} | buffers
    return {name: depths[name] for name in model.state_dict() if name in depths}


def stream_bits(model: nn.Module, bits: int) -> int:
    """The bitstream's bit depth: the widest of the stored tensors' (its range codes every one of them)."""
    return max(stored_bits(model, bits).values(), default=bits)


def check_weight_bits(bits: Any, where: str) -> None:
    """One sentence naming ``where`` unless ``bits`` is an integer from ``MIN_BITS`` to ``MAX_BITS``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise CamfieldsError(f"{where}: the weights' bit depth must be from {MIN_BITS} to {MAX_BITS}, got {bits!r}")


def quantize_state(model: nn.Module, bits: int) -> list[QuantizedTensor]:
    """Every stored tensor (``stored_bits``) as symmetric integers and one step, in ``state_dict`` order;
    the tensors the model codes under contexts (``compression.context.context_widths``) marked so."""
    state, widths = model.state_dict(), context_widths(model)
    tensors = []
    for name, depth in stored_bits(model, bits).items():
        values, steps = symmetric_integers(state[name].float(), depth)
        flat = values.reshape(-1).cpu().numpy()
        tensors.append(QuantizedTensor(name, tuple(state[name].shape), steps.cpu().numpy(), flat, widths.get(name, 0)))
    return tensors


@torch.no_grad()
def load_levels(model: nn.Module, tensors: list[QuantizedTensor]) -> nn.Module:
    """``model`` with each of ``tensors`` (dequantized) copied into the tensor of its name; returns it."""
    state = model.state_dict()
    for t in tensors:
        state[t.name].copy_(torch.from_numpy(t.dequantize()))
    return model


def quantized_model(model: nn.Module, bits: int) -> nn.Module:
    """A CPU copy of ``model`` holding exactly the values a decoder rebuilds from its ``bits``-bit file."""
    return load_levels(copy.deepcopy(model).cpu(), quantize_state(model, bits))


@torch.no_grad()
def check_derived_buffers(model: nn.Module, fresh: dict[str, torch.Tensor], bits: int) -> None:
    """Every buffer neither stored nor training state must equal ``fresh`` (the ``state_dict`` of the
    model the config builds, which the decoder rebuilds), else the file would decode to another field."""
    skipped = set(stored_bits(model, bits)) | set(_buffers(model, TRAINING_BUFFERS))
    for name, value in model.state_dict().items():
        if name not in skipped and not torch.equal(value.cpu(), fresh[name]):
            raise CamfieldsError(
                f"buffer {name} of the field is not the one its config builds and is not stored: "
                "the file cannot rebuild it"
            )


def check_encodable(model: nn.Module, build: Callable[[], nn.Module], bits: int, where: str) -> None:
    """The fitted ``model`` must be what ``build()`` (the model its config describes) builds: the
    tensors a file stores, by name and shape (laid out on the meta device first), and every
    buffer it does not store (built fresh, the global RNG left untouched); one sentence naming
    ``where`` otherwise."""
    with torch.device("meta"):
        layout = build()
    state, shapes = model.state_dict(), layout.state_dict()
    stored = {name: tuple(state[name].shape) for name in stored_bits(model, bits)}
    check_layout(stored, {name: tuple(shapes[name].shape) for name in stored_bits(layout, bits)}, where, "the field")
    with torch.random.fork_rng(devices=[]):
        check_derived_buffers(model, build().state_dict(), bits)


def header_of(
    stream: Bitstream, path: Path, fmt: str, what: str, keys: tuple[str, ...], tables: tuple[str, ...]
) -> dict:
    """The header of a ``fmt`` file (``what``: "image", "scene"), holding every one of ``keys`` and a
    table of settings at each of ``tables``; one sentence naming ``path`` otherwise."""
    header = stream.config
    if not isinstance(header, dict) or header.get("format") != fmt:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CamfieldsError(f"{path} holds {found!r}, not a camfields {what} ({fmt})")
    missing = [key for key in keys if key not in header]
    if missing:
        raise CamfieldsError(f"{path}: the {what} header lacks {', '.join(missing)}")
    for key in tables:
        if not isinstance(header[key], dict):
            raise CamfieldsError(f"{path}: the {what} header's {key} must be a table of settings")
    return header


def check_stored(stream: Bitstream, layout: nn.Module, bits: int, where: str, what: str) -> None:
    """A file's tensors must be exactly those ``layout`` (the model its header describes, on the meta
    device) stores at ``bits``, by name and shape, coded at its bit depth, each tensor's integers
    within its own depth; one sentence naming ``where`` otherwise."""
    depths = stored_bits(layout, bits)
    shapes = layout.state_dict()
    check_layout({t.name: t.shape for t in stream.tensors}, {n: tuple(shapes[n].shape) for n in depths}, where, what)
    if stream.bits != stream_bits(layout, bits):
        raise CamfieldsError(f"{where}: its bit depth {stream.bits} does not match its header's weights and buffers")
    for t in stream.tensors:
        if t.values.size and int(np.abs(t.values).max()) > symmetric_levels(depths[t.name]):
            raise CamfieldsError(f"{where}: tensor {t.name} has integers beyond its {depths[t.name]}-bit range")
