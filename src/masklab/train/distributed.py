"""DistributedDataParallel set-up for ``torchrun``: gloo on CPU, nccl on GPU. One process = one rank."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "setup", "teardown", "mean_across", "any_across"]


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Read torchrun's environment; initialise the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, local, dev)


def teardown() -> None:
    """Leave the process group together. Rank 0 evaluates and saves last, so every rank first meets at a barrier.

    A gloo barrier can return on rank 0 before a peer has read rank 0's last message, and a peer whose partner
    process has exited then waits in the barrier (or in ``destroy_process_group``) forever. So the ranks also meet
    on the launcher's key-value store (not a gloo collective) after the barrier and after leaving the group: no
    rank exits while another still talks to it."""
    if not dist.is_initialized():
        return
    store, world = dist.distributed_c10d._get_default_store(), dist.get_world_size()
    dist.barrier()
    _meet(store, "barrier", world)
    dist.destroy_process_group()
    _meet(store, "left", world)


def _meet(store, what: str, world: int, timeout_s: float = 300.0) -> None:
    """Wait (polling the store) until every rank has reached this point, or ``timeout_s`` passed."""
    import time

    key = f"masklab/teardown/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{what}"
    store.add(key, 1)
    deadline = time.monotonic() + timeout_s
    while store.add(key, 0) < world and time.monotonic() < deadline:
        time.sleep(0.01)


def mean_across(x: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def any_across(flag: bool, device) -> bool:
    """True on every rank if it is True on any rank (for stopping together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
