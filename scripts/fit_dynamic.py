#!/usr/bin/env python
"""Fit a dynamic scene (D-NeRF folder or packed .npz); the same as
``camfields fit dynamic`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.fit_dynamic import main

if __name__ == "__main__":
    sys.exit(run(main))
