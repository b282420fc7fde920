"""Training hooks: schedules that act on the model as training goes, in the style of gsplat's
``Strategy``. The loop passes each hook the step number; no model keeps a step counter.

Per step ``s`` (0-based, the number of optimizer steps already taken) the loop calls, in the
order the hooks are listed: every ``before_step(s, model, generator)`` (e.g. refresh an
occupancy grid); the objective's loss, read through the tensors every ``weights(s, model)``
gives in place of the model's own (e.g. quantization-aware training's n-bit levels; see
``read_through``), plus every ``penalty(s, model)`` on the model's own tensors; the optimizer
step; then every ``after_step(s + 1, model)`` (e.g. re-apply pruning masks). A resumed fit
calls them with the steps it continues from, so a hook that derives its state from the step
behaves as in an uninterrupted fit.

Example::

    >>> import torch
    >>> from camfields.training.hooks import Hook
    >>> class Count(Hook):
    ...     def __init__(self):
    ...         self.seen = []
    ...     def before_step(self, step, model, generator):
    ...         self.seen.append(step)
    >>> hook = Count()
    >>> hook.before_step(0, torch.nn.Linear(1, 1), torch.Generator())
    >>> hook.seen
    [0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn
from torch.func import functional_call

T = TypeVar("T")


class Hook:
    """A schedule acting on the model; every method does nothing unless overridden."""

    def before_step(self, step: int, model: nn.Module, generator: torch.Generator) -> None:
        """Called before step ``step``'s loss; may draw from ``generator`` (the batch generator,
        the same on every rank, saved in checkpoints)."""

    def weights(self, step: int, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """Values (by ``named_parameters`` / ``state_dict`` name) that step ``step``'s loss reads in
        place of the model's own tensors, differentiable in them; None to read the model as it is."""
        return None

    def penalty(self, step: int, model: nn.Module) -> torch.Tensor | None:
        """A term added to step ``step``'s loss (inside the distributed forward), or None."""
        return None

    def after_step(self, step: int, model: nn.Module) -> None:
        """Called after the optimizer step that made ``step`` steps done."""


class _Reading(nn.Module):
    """Runs a function of a module: ``torch.func.functional_call`` on this adapter replaces the
    module's tensors for the call, whichever of the module's methods the function calls."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, fn: Callable[[nn.Module], T]) -> T:
        return fn(self.module)


def read_through(hooks: Sequence[Hook], step: int, model: nn.Module, fn: Callable[[nn.Module], T]) -> T:
    """``fn(model)`` with the model's tensors replaced by every hook's ``weights`` at ``step``
    (later hooks win), or ``fn(model)`` itself when no hook gives any."""
    values: dict[str, torch.Tensor] = {}
    for hook in hooks:
        values |= hook.weights(step, model) or {}
    if not values:
        return fn(model)
    return functional_call(_Reading(model), {f"module.{name}": v for name, v in values.items()}, (fn,))


def total_penalty(hooks: Sequence[Hook], step: int, model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """``loss`` plus every hook's penalty at ``step``, added in the order of ``hooks``."""
    for hook in hooks:
        term = hook.penalty(step, model)
        if term is not None:
            loss = loss + term
    return loss
