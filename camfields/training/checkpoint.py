"""Checkpoints and output files, written atomically and read without unpickling objects."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from camfields.errors import CamfieldsError, first_line
from camfields.io.atomic import atomic_write


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(Path(path), lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def read_json(path: Path) -> Any:
    """Read a JSON file written by camfields, with one clear error when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CamfieldsError(f"could not read {path}: {e}") from None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a checkpoint (tensors, numbers, strings, lists and dicts only), atomically."""
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: no arbitrary object is unpickled."""
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles ("please file an issue") are not ours
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CamfieldsError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch reports truncation and corruption as several types
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
            raise CamfieldsError(  # never repeat torch's advice to load it with weights_only=False
                f"checkpoint {path} holds Python objects besides tensors, numbers and strings, which camfields "
                "never writes: it was refused without running them"
            ) from None
        raise CamfieldsError(
            f"checkpoint {path} is truncated or corrupt ({first_line(e)}); delete it to restart that fit"
        ) from None
