"""Compute per training step, counted the same way for every run (Kaplan et al. 2020's C = 6ND):
6 x trained parameters x tokens (forward and backward) plus 2 x frozen parameters x tokens (a forward only: a
frozen teacher or base model). ELECTRA's generator is trained, so it counts in full. Tokens are the training tokens
of a step (text) or its patches (images).

"Parameters" are those that multiply activations: a table that is only looked up (an ``nn.Embedding`` whose weight
is not also an output layer, GDES's E_delta) costs no FLOPs and is left out, as Kaplan et al. leave out embeddings.
An objective whose parts see different numbers of tokens says so with ``flop_groups()`` (MAE: the encoder sees the
visible patches only). Attention's sequence-length term is left out; ``tests/compare/test_flops.py`` checks the
count against ``torch.utils.flop_counter.FlopCounterMode`` on one step of each recipe (within 10%)."""

from __future__ import annotations

import torch

__all__ = ["param_counts", "matmul_params", "tokens_per_example", "flops_per_step"]


def param_counts(params) -> tuple[int, int]:
    """(trained, frozen) counts of a module's parameters (or of an iterable of them); a tied one counts once."""
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    trained = frozen = 0
    for p in {id(p): p for p in params}.values():
        if p.requires_grad:
            trained += p.numel()
        else:
            frozen += p.numel()
    return trained, frozen


def matmul_params(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """``module``'s parameters less the lookup-only tables (see the module docstring)."""
    linear = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Linear)}
    lookup = set()
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding) or getattr(m, "lookup_only", False):
            lookup.update(id(p) for p in m.parameters(recurse=False) if id(p) not in linear)
    return [p for p in module.parameters() if id(p) not in lookup]


def tokens_per_example(task) -> int:
    """Tokens of one training example: its length (text), its patch count (images: ``grid`` in the task info), or
    ``example_tokens`` when the task info names it (an example that packs ids with their labels)."""
    if "example_tokens" in task.info:
        return int(task.info["example_tokens"])
    grid = task.info.get("grid")
    if grid:
        n = 1
        for g in grid:
            n *= int(g)
        return n
    return int(task.train[0].numel())


def flops_per_step(recipe, task) -> float:
    """Training FLOPs of one optimizer step of ``recipe`` (its global batch) on ``task``."""
    tokens = recipe.batch_size * tokens_per_example(task)
    groups = getattr(task.objective, "flop_groups", None)
    groups = groups() if groups else [(matmul_params(task.objective), 1.0)]
    total = 0.0
    for params, fraction in groups:
        trained, frozen = param_counts(params)
        total += (6.0 * trained + 2.0 * frozen) * tokens * fraction
    return total
