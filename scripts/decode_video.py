#!/usr/bin/env python
"""Rebuild the frames of a camfields video bitstream (.camf); the same as
``camfields decode`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.decode_video import main

if __name__ == "__main__":
    sys.exit(run(main))
