#!/usr/bin/env python
"""Rate-distortion evaluation of the video codec against x264 and x265; the same as
``camfields eval-rd`` (see README.md)."""

import sys

from camfields.cli import run
from camfields.commands.eval_rd import main

if __name__ == "__main__":
    sys.exit(run(main))
