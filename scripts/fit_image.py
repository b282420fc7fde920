#!/usr/bin/env python
"""Fit an image (or every image of a folder) with ffn, cam or ngp; the same as
``camfields fit image`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.fit_image import main

if __name__ == "__main__":
    sys.exit(run(main))
