"""Composable sparse fine-tuning with the Lottery Ticket Sparse Fine-Tuning recipe (LT-SFT: Ansell, Ponti,
Korhonen, Vulic, 2022, "Composable Sparse Fine-Tuning for Cross-Lingual Transfer", ACL, Sec. 3):

1. Phase 1: fine-tune every parameter, theta_0 -> theta_1.
2. Select the K entries with the largest |theta_1 - theta_0| over all chosen parameters (the "winning
   ticket").
3. Phase 2: reset to theta_0 and fine-tune only those K entries, theta_0 -> theta_2.
4. The sparse fine-tuning is phi = (theta_2 - theta_0) on the K entries; it is stored as indices plus values.

Several differences compose by addition: ``theta_0 + phi_task + phi_lang`` (paper Eq. 3).

Bit-exact revert: floating-point ``(w + v) - v`` is not always ``w``, so ``apply_`` returns a ``DiffHandle``
that keeps the exact pre-apply values at the touched entries; ``handle.revert()`` writes them back. Applying
``compose(d1, d2, ...)`` and reverting that handle therefore restores the weights bit for bit; so does
reverting several handles in reverse order.

File format (``SparseDiff.save``): a safetensors file with ``"<param>::indices"`` (int64, flat, sorted) and
``"<param>::values"`` per parameter, and the shapes in the metadata key ``"masklab.sparse_diff"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["SparseDiff", "DiffHandle", "topk_changed", "diff_between", "compose", "apply_", "lt_sft"]

_META = "masklab.sparse_diff"


@dataclass
class SparseDiff:
    """A sparse parameter difference: per parameter name, flat sorted indices and the values added there."""

    indices: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (nnz,) int64
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (nnz,) parameter dtype
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # name -> parameter shape

    def __post_init__(self):
        for name in self.indices:
            if self.indices[name].shape != self.values[name].shape or self.indices[name].dim() != 1:
                raise ValueError(f"indices and values of {name!r} must be 1-D and the same length")

    @property
    def nnz(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        tensors = {}
        for name in self.indices:
            tensors[f"{name}::indices"] = self.indices[name].contiguous().cpu()
            tensors[f"{name}::values"] = self.values[name].contiguous().cpu()
        meta = {_META: json.dumps({k: list(v) for k, v in self.shapes.items()})}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseDiff:
        from safetensors import safe_open

        if not os.path.exists(path):
            raise FileNotFoundError(f"no sparse diff file at {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if _META not in meta:
                raise ValueError(f"{path} is not a masklab sparse diff (no {_META!r} metadata)")
            shapes = {k: tuple(v) for k, v in json.loads(meta[_META]).items()}
            idx = {k: f.get_tensor(f"{k}::indices") for k in shapes}
            val = {k: f.get_tensor(f"{k}::values") for k in shapes}
        return cls(idx, val, shapes)


def topk_changed(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], k: int
) -> dict[str, torch.Tensor]:
    """Bool masks of the ``k`` entries with the largest ``|after - before|`` over all tensors together."""
    names = list(before)
    sizes = [before[n].numel() for n in names]
    if not 0 < k <= sum(sizes):
        raise ValueError(f"k must be in [1, {sum(sizes)}] (number of candidate entries), got {k}")
    delta = torch.cat([(after[n].detach().float() - before[n].float()).abs().reshape(-1).cpu() for n in names])
    flat = torch.zeros(delta.numel(), dtype=torch.bool)
    flat[delta.topk(k).indices] = True
    return {
        n: part.reshape(before[n].shape).to(before[n].device) for n, part in zip(names, flat.split(sizes), strict=True)
    }


def diff_between(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
) -> SparseDiff:
    """``after - before`` at the ``True`` entries of ``masks`` (names with no selected entry are dropped)."""
    d = SparseDiff()
    for name, mk in masks.items():
        idx = mk.reshape(-1).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        d.indices[name] = idx.cpu()
        d.values[name] = (after[name].detach().reshape(-1)[idx] - before[name].reshape(-1)[idx]).cpu()
        d.shapes[name] = tuple(before[name].shape)
    return d


def compose(*diffs: SparseDiff) -> SparseDiff:
    """The sum of several differences (union of entries; overlapping values add, summed in float64)."""
    out = SparseDiff()
    for name in dict.fromkeys(n for d in diffs for n in d.indices):
        parts = [d for d in diffs if name in d.indices]
        shapes = {d.shapes[name] for d in parts}
        if len(shapes) != 1:
            raise ValueError(f"diffs disagree on the shape of {name!r}: {sorted(shapes)}")
        idx = torch.cat([d.indices[name] for d in parts])
        val = torch.cat([d.values[name].double() for d in parts])
        uniq, inv = idx.unique(sorted=True, return_inverse=True)
        summed = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, val)
        out.indices[name], out.values[name] = uniq, summed.to(parts[0].values[name].dtype)
        out.shapes[name] = shapes.pop()
    return out


@dataclass
class DiffHandle:
    """Undo record of ``apply_``: the exact values that were overwritten."""

    model: nn.Module
    saved: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (indices, old values)

    @torch.no_grad()
    def revert(self) -> None:
        """Write the saved values back: the touched entries become bit-identical to before ``apply_``."""
        params = dict(self.model.named_parameters())
        for name, (idx, old) in self.saved.items():
            params[name].data.view(-1)[idx.to(params[name].device)] = old.to(params[name].device)
        self.saved = {}


def _params(model: nn.Module, diff: SparseDiff) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    for name in diff.indices:
        if name not in params:
            raise ValueError(f"sparse diff names parameter {name!r}, which the model does not have")
        if tuple(params[name].shape) != tuple(diff.shapes[name]):
            raise ValueError(f"shape of {name!r}: diff {diff.shapes[name]}, model {tuple(params[name].shape)}")
    return params


@torch.no_grad()
def apply_(model: nn.Module, diff: SparseDiff, alpha: float = 1.0) -> DiffHandle:
    """Add ``alpha * diff`` to the model's parameters in place; returns the handle that reverts it exactly."""
    params = _params(model, diff)
    saved = {}
    for name, idx in diff.indices.items():
        flat = params[name].data.view(-1)
        i = idx.to(flat.device)
        saved[name] = (idx, flat[i].clone().cpu())
        flat[i] = flat[i] + (alpha * diff.values[name].to(flat.device, torch.float64)).to(flat.dtype)
    return DiffHandle(model, saved)


def _select(model: nn.Module, filter: Callable[[str, nn.Parameter], bool] | None) -> dict[str, nn.Parameter]:
    chosen = {n: p for n, p in model.named_parameters() if p.requires_grad and (filter is None or filter(n, p))}
    if not chosen:
        raise ValueError("the parameter filter matches no trainable parameter")
    return chosen


def _finetune(model, params, loss_fn, batches, steps, lr, masks=None, origin=None):
    opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        loss = loss_fn(model, batches[step % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masks is not None:
            for n, p in params.items():
                if p.grad is not None:
                    p.grad.mul_(masks[n].to(p.grad.dtype))
        opt.step()
        if masks is not None:  # entries outside the ticket stay exactly at theta_0
            with torch.no_grad():
                for n, p in params.items():
                    p.data.copy_(torch.where(masks[n], p.data, origin[n]))


def lt_sft(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    k: int,
    steps_full: int = 100,
    steps_sparse: int | None = None,
    lr: float = 1e-4,
    filter: Callable[[str, nn.Parameter], bool] | None = None,
) -> SparseDiff:
    """Run LT-SFT and return the sparse difference of ``k`` entries; the model is left at theta_0 (bit-exact).

    ``loss_fn(model, batch)`` is the task loss; ``batches`` is cycled. ``filter(name, param)`` chooses the
    parameters that may change (default: every trainable parameter). ``steps_sparse`` defaults to
    ``steps_full``.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("LT-SFT needs at least one batch")
    params = _select(model, filter)
    if not 0 < k <= sum(p.numel() for p in params.values()):
        raise ValueError(f"k must be in [1, {sum(p.numel() for p in params.values())}], got {k}")
    was_training = model.training
    theta0 = {n: p.detach().clone() for n, p in params.items()}
    _finetune(model, params, loss_fn, batches, steps_full, lr)  # phase 1: all entries
    masks = topk_changed(theta0, {n: p.detach() for n, p in params.items()}, k)
    with torch.no_grad():
        for n, p in params.items():
            p.data.copy_(theta0[n])
    _finetune(model, params, loss_fn, batches, steps_sparse or steps_full, lr, masks, theta0)  # phase 2
    diff = diff_between(theta0, {n: p.detach() for n, p in params.items()}, masks)
    with torch.no_grad():
        for n, p in params.items():
            p.data.copy_(theta0[n])
    model.train(was_training)
    return diff
