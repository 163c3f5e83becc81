"""Running the same commands under torchrun: process group, rank helpers, sharding and gathering.

`torchrun --nproc_per_node N -m workbench train|run|ablate ...` starts N copies of the command. Each
command enters `process_group()`, which joins the group torchrun describes in the environment (gloo on
CPU, NCCL on CUDA) and is a no-op for a plain one-process run, so the code paths are the same:

- training (`workbench.training.train`): every rank draws the same global batch and the same corruption noise
  and trains on its slice (`rank_rows`); DDP (or FSDP) averages the gradients, so N processes take the
  one-process step up to float rounding;
- evaluation (`workbench.results.evaluate`): the one-process run's batches are dealt out round-robin (batch b
  to rank b % N), so every sample is decoded in exactly the batch it would be in one process, and the
  records are gathered on rank 0, the only rank that opens the results store or prints.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a one-process run): the rank that writes files and prints."""
    return rank_world()[0] == 0


def local_device() -> torch.device:
    """This process's device: the GPU torchrun assigned (LOCAL_RANK) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


@contextmanager
def process_group() -> Iterator[None]:
    """Join the process group torchrun set up (WORLD_SIZE > 1) for the duration of a command."""
    wanted = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not wanted or not dist.is_available() or dist.is_initialized():
        yield
        return
    device = local_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object); `obj` itself in a one-process run."""
    if rank_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(items: list) -> list | None:
    """Every rank's `items` concatenated in rank order on rank 0; None on the other ranks."""
    rank, world = rank_world()
    if world == 1:
        return list(items)
    parts: list | None = [None] * world if rank == 0 else None
    dist.gather_object(items, parts, dst=0)
    return [x for part in parts for x in part] if parts is not None else None


def mean_over_ranks(value: float) -> float:
    """The mean of a float over ranks, known to every rank."""
    world = rank_world()[1]
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.to(local_device())
    dist.all_reduce(t)
    return float(t.item()) / world


def rank_rows(batch_size: int, world: int, rank: int, accumulate: int = 1) -> list[slice]:
    """This rank's rows of a global batch, as `accumulate` equal micro-batch slices.

    Rank r owns the contiguous rows [r * n, (r + 1) * n) with n = batch_size / world, cut into
    `accumulate` micro-batches. Equal sizes everywhere, so averaging gradients over ranks is exact.
    """
    if batch_size % (world * accumulate):
        raise ValueError(
            f"--batch-size {batch_size} is the global batch; it must be divisible by the number of processes "
            f"({world}) times --accumulate ({accumulate}) so every rank and micro-step gets the same number of "
            f"examples; use e.g. --batch-size {world * accumulate * max(1, batch_size // (world * accumulate))}"
        )
    per_rank = batch_size // world
    micro = per_rank // accumulate
    first = rank * per_rank
    return [slice(first + k * micro, first + (k + 1) * micro) for k in range(accumulate)]


def round_robin(batches: list, rank: int, world: int) -> Iterator[list]:
    """Rounds of work: in round k this rank takes batch k * world + rank (an empty list when none is left).

    Every rank runs the same number of rounds, so a collective once per round never waits forever.
    """
    for first in range(0, len(batches), world):
        index = first + rank
        yield batches[index] if index < len(batches) else []


__all__ = ["rank_world", "is_main", "local_device", "process_group", "broadcast", "gather_lists",
           "mean_over_ranks", "rank_rows", "round_robin"]
