"""Progress of the phases after training (evaluation views, a quantized pass, a turntable video,
encoding and decoding), so that no part of a fit longer than a few seconds is silent."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from camfields import distributed

T = TypeVar("T")


def phase(items: Iterable[T], total: int, description: str | None) -> Iterator[T]:
    """``items`` with a progress bar labelled ``description`` on the main rank; None shows none.

    Example:
        >>> list(phase(range(3), 3, None))
        [0, 1, 2]
    """
    shown = description is not None and distributed.current().main
    bar = tqdm(items, total=total, desc=description, disable=not shown, dynamic_ncols=True)
    try:
        yield from bar
    finally:
        bar.close()


def announce(message: str) -> None:
    """Print ``message``, the start of a phase with no steps to count, on the main rank (stderr)."""
    if distributed.current().main:
        tqdm.write(message, file=sys.stderr)
