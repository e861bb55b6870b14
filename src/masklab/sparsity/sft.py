"""Composable sparse fine-tuning with the Lottery Ticket Sparse Fine-Tuning recipe (LT-SFT: Ansell, Ponti,
Korhonen, Vulic, 2022, "Composable Sparse Fine-Tuning for Cross-Lingual Transfer", ACL, Sec. 3). Reference:
cambridgeltl/composable-sft, ``src/sft/lt_sft.py`` (``train``, ``unfreeze_k_most_changed_params``) and
``src/sft/trainer.py`` (``training_step``: the L1 term and the gradient mask).

For ``it = 1 .. iterations`` (reference ``n_ft_iterations``), starting from theta_0:

1. Phase 1: fine-tune every chosen parameter from the current theta (no mask), theta -> theta_1.
2. Select the ``k / iterations`` entries not selected yet with the largest ``|theta_1 - theta_0|`` (the "winning
   ticket" grows by that much).
3. Phase 2: go back to the theta of step 1 and fine-tune only the selected entries; every other entry stays
   exactly at theta_0.

Both phases may add the L1 pull towards the pretrained values (reference ``training_step``):
``L + lambda * sum |theta - theta_0| / N`` over the chosen parameters, ``N`` the number of parameters of the
whole model (reference ``_num_params``). The default is the reference's (``SftArguments``: 0); its language SFT
script uses ``--full_l1_reg 0.1 --sparse_l1_reg 0.1`` (``examples/language-modeling/train_mlm.sh``), its task
scripts 0. The sparse fine-tuning is phi = (theta_final - theta_0) on the K entries, stored as indices plus
values. Several differences compose by addition: ``theta_0 + phi_task + phi_lang`` (paper Eq. 3).

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

__all__ = [
    "SparseDiff",
    "DiffHandle",
    "topk_changed",
    "diff_between",
    "compose",
    "apply_",
    "l1_to_origin",
    "lt_sft",
]

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
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    k: int,
    exclude: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Bool masks of the ``k`` entries with the largest ``|after - before|`` over all tensors together, among
    the entries not ``True`` in ``exclude`` (reference ``unfreeze_k_most_changed_params``)."""
    names = list(before)
    sizes = [before[n].numel() for n in names]
    free = sum(sizes) - (0 if exclude is None else sum(int(exclude[n].sum()) for n in names))
    if not 0 < k <= free:
        raise ValueError(f"k must be in [1, {free}] (number of candidate entries), got {k}")
    delta = torch.cat([(after[n].detach().float() - before[n].float()).abs().reshape(-1).cpu() for n in names])
    if exclude is not None:  # already selected: never chosen again
        taken = torch.cat([exclude[n].reshape(-1).cpu() for n in names])
        delta = torch.where(taken, torch.full_like(delta, -1.0), delta)
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


def l1_to_origin(params: Mapping[str, torch.Tensor], origin: Mapping[str, torch.Tensor], n_total: int):
    """``sum |theta - theta_0| / N``: the L1 pull of the chosen parameters towards their pretrained values
    (reference ``training_step``, which divides by ``N``, the number of parameters of the whole model)."""
    return sum((p - origin[n]).abs().sum() for n, p in params.items()) / n_total


def _finetune(model, params, loss_fn, batches, steps, lr, l1=0.0, masks=None, origin=None, n_total=1):
    """One phase: AdamW (no weight decay) from a fresh state, as the reference restarts its optimizer per phase;
    with ``masks``, only their entries move and every other entry is held exactly at ``origin``."""
    opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        loss = loss_fn(model, batches[step % len(batches)])
        if l1:
            loss = loss + l1 * l1_to_origin(params, origin, n_total)
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


def _shares(k: int, iterations: int) -> list[int]:
    """``k`` split over the iterations, the first ``k % iterations`` taking one more (they sum to ``k``)."""
    return [k // iterations + (i < k % iterations) for i in range(iterations)]


def lt_sft(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    k: int,
    steps_full: int = 100,
    steps_sparse: int | None = None,
    lr: float = 1e-4,
    filter: Callable[[str, nn.Parameter], bool] | None = None,
    l1: float = 0.0,
    l1_sparse: float | None = None,
    iterations: int = 1,
) -> SparseDiff:
    """Run LT-SFT and return the sparse difference of ``k`` entries; the model is left at theta_0 (bit-exact).

    ``loss_fn(model, batch)`` is the task loss; ``batches`` is cycled. ``filter(name, param)`` chooses the
    parameters that may change (default: every trainable parameter). ``steps_full`` and ``steps_sparse`` (default
    ``steps_full``) are per iteration. ``l1`` weighs the L1 pull towards theta_0 in phase 1 and ``l1_sparse``
    (default ``l1``) in phase 2 (reference ``full_l1_reg`` / ``sparse_l1_reg``); ``iterations`` is the reference's
    ``n_ft_iterations`` (module docstring).
    """
    batches = list(batches)
    if not batches:
        raise ValueError("LT-SFT needs at least one batch")
    if iterations < 1 or l1 < 0 or (l1_sparse is not None and l1_sparse < 0):
        raise ValueError(f"iterations must be >= 1 and l1, l1_sparse >= 0, got {iterations}, {l1}, {l1_sparse}")
    params = _select(model, filter)
    if not iterations <= k <= sum(p.numel() for p in params.values()):
        raise ValueError(f"k must be in [{iterations}, {sum(p.numel() for p in params.values())}], got {k}")
    l1_sparse = l1 if l1_sparse is None else l1_sparse
    n_total = sum(p.numel() for p in model.parameters())
    was_training = model.training
    theta0 = {n: p.detach().clone() for n, p in params.items()}
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
    for share in _shares(k, iterations):
        previous = {n: p.detach().clone() for n, p in params.items()}
        _finetune(model, params, loss_fn, batches, steps_full, lr, l1, origin=theta0, n_total=n_total)  # phase 1
        grown = topk_changed(theta0, {n: p.detach() for n, p in params.items()}, share, exclude=masks)
        masks = {n: masks[n] | grown[n] for n in params}
        _reset(params, previous)
        steps = steps_sparse or steps_full
        _finetune(model, params, loss_fn, batches, steps, lr, l1_sparse, masks, theta0, n_total)  # phase 2
    diff = diff_between(theta0, {n: p.detach() for n, p in params.items()}, masks)
    _reset(params, theta0)
    model.train(was_training)
    return diff


@torch.no_grad()
def _reset(params: Mapping[str, nn.Parameter], values: Mapping[str, torch.Tensor]) -> None:
    for n, p in params.items():
        p.data.copy_(values[n])
