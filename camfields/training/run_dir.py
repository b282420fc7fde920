"""Output folders: the resolved config of a fit, and protection of earlier results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camfields.config import config_differences, to_dict
from camfields.errors import CamfieldsError
from camfields.training.checkpoint import read_json, write_json

CONFIG_NAME = "config.json"


def with_missing_keys(recorded: Any, defaults: Any) -> Any:
    """``recorded`` with every key it lacks and ``defaults`` has added at its default value (nested dicts)."""
    if not isinstance(recorded, dict) or not isinstance(defaults, dict):
        return recorded
    return {**defaults, **{k: with_missing_keys(v, defaults.get(k)) for k, v in recorded.items()}}


def prepare_run_dir(out_dir: Path, cfg: Any, resume: bool) -> None:
    """Create ``out_dir`` and record the dataclass config ``cfg`` there, refusing to clobber another fit.

    Without ``resume`` a folder that already holds a fit is an error (nothing in it is
    touched); with ``resume`` its recorded config must equal ``cfg``. A setting the recorded
    config lacks (added to camfields after that fit) counts as its default, the behaviour
    every new setting keeps.
    """
    out_dir = Path(out_dir)
    config = json.loads(json.dumps(to_dict(cfg)))  # tuples become lists, as read back from JSON
    defaults = json.loads(json.dumps(to_dict(type(cfg)())))
    config_path = out_dir / CONFIG_NAME
    if config_path.exists():
        if not resume:
            raise CamfieldsError(f"{out_dir} already holds a fit; pass --resume to continue it or choose another --out")
        recorded = with_missing_keys(read_json(config_path), defaults)
        differences = config_differences(recorded, config)
        if differences:
            raise CamfieldsError(
                f"cannot resume {out_dir}: it was fitted with a different config "
                f"({', '.join(differences)} differ); rerun with the same settings or another --out"
            )
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise CamfieldsError(f"output path {out_dir} exists and is not a folder")
    write_json(config_path, config)
