"""Output folders: the resolved config of a fit, and protection of earlier results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camfields.config import config_differences
from camfields.errors import CamfieldsError
from camfields.training.checkpoint import read_json, write_json

CONFIG_NAME = "config.json"


def prepare_run_dir(out_dir: Path, config: dict[str, Any], resume: bool) -> None:
    """Create ``out_dir`` and record ``config`` there, refusing to clobber another fit.

    Without ``resume`` a folder that already holds a fit is an error (nothing in it is
    touched); with ``resume`` its recorded config must equal ``config``.
    """
    out_dir = Path(out_dir)
    config = json.loads(json.dumps(config))  # tuples become lists, as read back from JSON
    config_path = out_dir / CONFIG_NAME
    if config_path.exists():
        if not resume:
            raise CamfieldsError(f"{out_dir} already holds a fit; pass --resume to continue it or choose another --out")
        differences = config_differences(read_json(config_path), config)
        if differences:
            raise CamfieldsError(
                f"cannot resume {out_dir}: it was fitted with a different config "
                f"({', '.join(differences)} differ); rerun with the same settings or another --out"
            )
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise CamfieldsError(f"output path {out_dir} exists and is not a folder")
    write_json(config_path, config)
