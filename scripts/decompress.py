#!/usr/bin/env python
"""Rebuild an image from its .camf file alone; the same as ``camfields decompress``
(see docs/codec.md)."""

import sys

from camfields.cli import run
from camfields.commands.decompress import main

if __name__ == "__main__":
    sys.exit(run(main))
