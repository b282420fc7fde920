#!/usr/bin/env python
"""Compress a finished fit (an image run folder) into one .camf file; the same as
``camfields compress`` (see docs/codec.md)."""

import sys

from camfields.cli import run
from camfields.commands.compress import main

if __name__ == "__main__":
    sys.exit(run(main))
