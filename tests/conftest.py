"""Shared fixtures: deterministic seeds and the location of the optional real data.

The tests mirror the package (``tests/ops`` for ``camfields/ops`` ...). Every test folder is on
``sys.path``, so a test imports another's helpers by module name (``from test_video import SMALL``)
wherever either lives; test file names are unique across the folders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"

for _folder in sorted(p for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def shared_data(relative: str) -> Path:
    """A path under ../shared/data, skipping the test when the data is not on this machine."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is not available on this machine")
    return path
