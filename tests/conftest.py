"""Shared fixtures: deterministic seeds and the location of the optional real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


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
