"""Running a fit on several processes through torchrun and torch.distributed.

A fit script started by ``torchrun --nproc_per_node N`` (or ``--nnodes``) finds
``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` in its environment; ``init`` then joins the
process group (NCCL for GPUs, gloo for CPUs) with a timeout, so a rank whose peers died
fails instead of waiting forever. Without those variables everything here is a no-op on
one process, so library code calls the same functions either way.

Conventions: every rank draws the *global* batch from the same seeded generator and
trains on its own slice (``Shard``), DistributedDataParallel averages the gradients,
and rank 0 alone writes checkpoints, logs and results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from camfields.errors import CamfieldsError
from camfields.runtime import resolve_device

#: seconds a rank waits for its peers in any collective before the job fails
TIMEOUT_ENV = "CAMFIELDS_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Shard:
    """This process's part of every global batch: rank ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the rank that writes files (rank 0)."""
        return self.rank == 0

    def take(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (B, ...); slices differ by at most one row."""
        return batch.tensor_split(self.world)[self.rank]

    def rows(self, count: int) -> slice:
        """This rank's rows of a batch of ``count`` rows: the same rows as ``take``, as a slice (no copy)."""
        size, extra = divmod(count, self.world)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def mean(self, local: torch.Tensor, global_rows: int) -> torch.Tensor:
        """The mean over the global batch, as far as this rank's rows ``local`` (b, ...) contribute.

        Scaled so that DistributedDataParallel's average over ranks of the gradients equals
        the gradient of the global mean, even when the slices have unequal sizes.
        """
        per_row = math.prod(local.shape[1:])
        return local.sum() * (self.world / (global_rows * per_row))

    def mine(self, items: Sequence[T]) -> list[T]:
        """The items this rank handles: every ``world``-th one, starting at ``rank``."""
        return list(items[self.rank :: self.world])


def launched() -> bool:
    """True when torchrun (or another launcher) started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current_rank_from_env() -> int:
    """The global rank torchrun gave this process (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def current() -> Shard:
    """This process's rank and the number of processes (0 of 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def _timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        raise CamfieldsError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise CamfieldsError(f"{TIMEOUT_ENV} must be positive, got {raw!r}")
    return timedelta(seconds=seconds)


def init(device: str = "auto") -> torch.device:
    """The device of this process, after joining the process group when launched by torchrun.

    ``device`` is "auto", "cpu" or "cuda" (each rank then takes GPU ``LOCAL_RANK``); a fixed
    "cuda:N" would put every rank of a machine on one GPU and is refused with several ranks.
    """
    if not launched():
        return resolve_device(device)
    if device.startswith("cuda:"):
        raise CamfieldsError(
            f"--device {device} would put every rank on one GPU; use --device cuda (each rank takes its LOCAL_RANK)"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if local_rank >= torch.cuda.device_count():
            raise CamfieldsError(
                f"rank with LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node"
            )
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = resolve_device(device)
    if not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=_timeout())
    return torch_device


#: words in the errors gloo and NCCL raise when a peer process died or stopped answering
_PEER_FAILURE_WORDS = ("connection closed by peer", "connection reset", "gloo", "nccl", "timed out", "timeout")


def peer_failure(error: BaseException) -> bool:
    """True when ``error`` says a collective failed because another rank died or hung."""
    text = str(error).lower()
    return any(word in text for word in _PEER_FAILURE_WORDS)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and hand its result to every rank; its CamfieldsError is raised on every rank."""
    shard = current()
    if shard.world == 1:
        return fn()
    outcome: list[Any] = [None]
    if shard.main:
        try:
            outcome = [("ok", fn())]
        except CamfieldsError as e:
            outcome = [("error", str(e))]
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise CamfieldsError(value)
    return value


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (a picklable object, tensors included)."""
    if current().world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    world = current().world
    if world == 1:
        return [value]
    values: list[Any] = [None] * world
    dist.all_gather_object(values, value)
    return values


def differing_states(model: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers whose values differ between the ranks (checked by checksum).

    Parameters stay equal under DistributedDataParallel; buffers (occupancy grids, step
    counters) stay equal because every rank updates them from the same weights and generator.
    """
    if current().world == 1:
        return []
    states = [*model.named_parameters(), *model.named_buffers()]
    sums = torch.stack([tensor.detach().double().sum() for _, tensor in states]).cpu().tolist()
    ranks = all_gather(sums)
    return [
        name
        for k, (name, _) in enumerate(states)
        if any(abs(other[k] - sums[k]) > 1e-6 * (1 + abs(sums[k])) for other in ranks)
    ]


def map_gathered(items: Sequence[T], work: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """Apply ``work`` to ``items`` spread over the ranks, one item per rank at a time.

    Yields (item, result) in the order of ``items`` on rank 0 and nothing elsewhere; every
    rank must exhaust the iterator (each round ends in a collective).
    """
    shard = current()
    if shard.world == 1:
        for item in items:
            yield item, work(item)
        return
    for start in range(0, len(items), shard.world):
        index = start + shard.rank
        result = work(items[index]) if index < len(items) else None
        values: list[Any] = [None] * shard.world if shard.main else None
        dist.gather_object(result, values, dst=0)
        if shard.main:
            for offset, value in enumerate(values[: len(items) - start]):
                yield items[start + offset], value
