"""FSDP2 for ``parallel=fsdp`` under ``torchrun`` (``torch.distributed.fsdp.fully_shard``): parameters, gradients
and optimizer state are sharded over the ranks (dim 0 of every tensor), so a model too large for one device trains
on several.

Each repeated block of the objective (a transformer layer) is one FSDP unit, all-gathered just before its forward
and backward and freed after; the rest (embeddings, heads, tied weights) is the root unit. Gradients are
reduce-scattered, i.e. averaged over ranks as under DDP, so the loss curve is the 1-process one within float
tolerance.

Checkpoints keep the one-process format: the full state is gathered to rank 0's CPU and written by the objective's
own ``save_model`` from a parameter-less copy of the objective taken before sharding (:func:`skeleton`), and the
optimizer state is numbered by integer parameter ids as ``optimizer.state_dict()`` of one process numbers it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

__all__ = ["FSDPModule", "blocks", "shard", "skeleton", "filled", "full_state", "load_optimizer"]


def blocks(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks of ``module``: the children of every ``nn.ModuleList`` of two or more modules of one
    type (transformer layers, encoder and decoder stacks alike). A list inside a block belongs to that block."""
    found, inside = [], set()
    for m in module.modules():  # parents before children
        if id(m) in inside or not isinstance(m, nn.ModuleList) or len(m) < 2 or len({type(c) for c in m}) > 1:
            continue
        found += list(m)
        inside |= {id(s) for c in m for s in c.modules()}
    return found


def shard(objective: nn.Module, device: torch.device) -> None:
    """``fully_shard`` every block of ``objective``, then ``objective`` itself, in place over all ranks: its
    parameters become DTensors on ``device``, each rank holding one slice. The objective may start on the CPU:
    each unit is moved to ``device`` only as it is sharded."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in blocks(objective):
        fully_shard(block, mesh=mesh)
    fully_shard(objective, mesh=mesh)


def skeleton(objective: nn.Module) -> nn.Module:
    """A copy of ``objective`` whose parameters are on the meta device (no memory): the module tree, ties and
    buffers that ``save_model`` writes from once :func:`filled` gives it the gathered weights. Take it before
    :func:`shard` (an FSDP module cannot be copied)."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in objective.parameters()}
    return copy.deepcopy(objective, memo)


def _put(module: nn.Module, name: str, param: nn.Parameter) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(module.get_submodule(owner), attr, param)


@contextmanager
def filled(shell: nn.Module, state: dict):
    """``shell`` (a :func:`skeleton`) holding the tensors of the full ``state`` while the context is open, ties
    kept (one parameter under all its names); its meta parameters come back after, so rank 0 holds no second copy
    of the model between saves."""
    tied: dict[int, tuple[nn.Parameter, list[str]]] = {}
    for name, p in shell.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), (p, []))[1].append(name)
    for p, names in tied.values():
        full = nn.Parameter(state[names[0]], p.requires_grad)
        for name in names:
            _put(shell, name, full)
    shell.load_state_dict(state)  # checks the keys and fills the persistent buffers
    try:
        yield shell
    finally:
        for p, names in tied.values():
            for name in names:
                _put(shell, name, p)


def _names(objective: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order: index ``i`` of a one-process ``optimizer.state_dict()``."""
    name = {id(p): n for n, p in objective.named_parameters()}
    return [name[id(p)] for g in optimizer.param_groups for p in g["params"]]


def full_state(objective: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state), unsharded, on rank 0's CPU; empty dicts on the other ranks. The optimizer
    state has integer parameter ids like a one-process ``optimizer.state_dict()``. A collective: call it on every
    rank."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model = get_model_state_dict(objective, options=opts)
    optim = get_optimizer_state_dict(objective, optimizer, options=opts)
    if not optim:
        return model, optim
    index = {n: i for i, n in enumerate(_names(objective, optimizer))}
    return model, {
        "state": {index[n]: s for n, s in optim["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in optim["param_groups"]],
    }


def load_optimizer(objective: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a one-process ``optimizer.state_dict()`` (integer ids, full tensors, the same on every rank) into the
    sharded ``optimizer``: each rank keeps its slice."""
    names = _names(objective, optimizer)
    by_name = {
        "state": {names[i]: s for i, s in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(objective, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
