"""A training-step counter that lives in checkpoints but is read from the device only once."""

from __future__ import annotations

import torch
from torch import nn


class StepCounted(nn.Module):
    """Base for models whose behaviour depends on how many training steps they have taken.

    ``steps_seen`` is a buffer (saved and restored with the weights); ``count_step()``
    returns the number of steps taken before this one and advances it, reading the buffer
    from the device only after construction or a ``load_state_dict`` (no per-step sync).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self._seen: int | None = None

    def count_step(self) -> int:
        if self._seen is None:
            self._seen = int(self.steps_seen)
        seen = self._seen
        self._seen += 1
        self.steps_seen += 1
        return seen

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._seen = None
        return super().load_state_dict(state_dict, strict, assign)
