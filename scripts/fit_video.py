#!/usr/bin/env python
"""Fit a video with a NeRV-style generator and write its bitstream; the same as
``camfields fit video`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.fit_video import main

if __name__ == "__main__":
    sys.exit(run(main))
