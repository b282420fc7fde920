"""Checkpoints and output files, written atomically and read without unpickling objects."""

from __future__ import annotations

import json
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CamfieldsError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch reports truncation and corruption as several types
        reason = first_line(e)
        raise CamfieldsError(
            f"checkpoint {path} is truncated or corrupt ({reason}); delete it to restart that fit"
        ) from None
