#!/usr/bin/env python
"""Fit a Blender, LLFF or nerfstudio scene with a NeRF model; the same as
``camfields fit nerf`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.fit_nerf import main

if __name__ == "__main__":
    sys.exit(run(main))
