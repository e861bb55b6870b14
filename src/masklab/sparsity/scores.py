"""Importance scores for pruning, and the calibration pass that feeds them.

- ``magnitude(W) = |W|``.
- ``wanda(W, norms) = |W_ij| * ||X_j||_2`` (Sun, Liu, Bair, Kolter, 2024, "A Simple and Effective Pruning
  Approach for Large Language Models", Eq. 1): ``X`` stacks every calibration token's input to the layer,
  ``[N*L, in]``, and ``||X_j||_2`` is the L2 norm of input feature ``j`` over all of them.
- ``sparsegpt_prune`` (Frantar & Alistarh, 2023, "SparseGPT", Algorithm 1): chooses the N:M mask column block
  by column block with the OBS saliency ``w^2 / [H^-1]_jj^2`` and updates the surviving weights to compensate,
  using the Hessian ``H = 2 X^T X / N`` of the layer-wise reconstruction error.

``collect_input_stats`` runs a model on calibration batches with forward pre-hooks on the chosen modules and
accumulates, per module, the per-feature sum of squares (for Wanda) and optionally ``X^T X`` (for SparseGPT).
Padding is not a calibration token: when a batch carries an ``attention_mask``, every statistic counts only the
positions it keeps (the papers calibrate on unpadded 2048-token C4 windows, where the question never arises).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "magnitude",
    "wanda",
    "InputStats",
    "collect_input_stats",
    "iter_calib",
    "run_model",
    "token_mask",
    "sparsegpt_prune",
]


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """|W|, the magnitude score."""
    return weight.detach().abs()


def wanda(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """Wanda score ``|W_ij| * ||X_j||_2``; ``weight`` [out, in], ``input_norm`` [in] (``InputStats.norm``)."""
    if weight.dim() != 2 or input_norm.shape != (weight.shape[1],):
        raise ValueError(
            f"wanda needs weight [out, in] and input_norm [in], got {tuple(weight.shape)} and {tuple(input_norm.shape)}"
        )
    return weight.detach().abs() * input_norm.to(weight.device, torch.float32)[None, :]


@dataclass
class InputStats:
    """Statistics of one layer's inputs over all calibration tokens."""

    sq_sum: torch.Tensor  # (in,) sum over tokens of x_j^2, float64
    count: int  # number of tokens seen
    xtx: torch.Tensor | None = None  # (in, in) sum over tokens of x x^T, float64; only with hessian=True

    @property
    def norm(self) -> torch.Tensor:
        """||X_j||_2 over all calibration tokens, [in] float32."""
        return self.sq_sum.sqrt().float()

    @property
    def hessian(self) -> torch.Tensor:
        """SparseGPT's H = 2 X^T X / N, [in, in] float32."""
        if self.xtx is None:
            raise ValueError("input statistics were collected without hessian=True")
        return (2.0 * self.xtx / max(self.count, 1)).float()


def iter_calib(calib) -> Iterable:
    """Batches from ``calib``: one dict of tensors / one tensor, or an iterable of them."""
    if calib is None:
        return []
    if isinstance(calib, (Mapping, torch.Tensor)):
        return [calib]
    return calib


def run_model(model: nn.Module, batch):
    """Call ``model`` on one calibration batch: ``model(**batch)`` for a dict, ``model(batch)`` otherwise."""
    if isinstance(batch, Mapping):
        dev = next((p.device for p in model.parameters()), None)
        return model(**{k: (v.to(dev) if torch.is_tensor(v) and dev is not None else v) for k, v in batch.items()})
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def token_mask(batch) -> torch.Tensor | None:
    """The real (non-padding) positions of a calibration batch, ``[B, L]`` bool, or None when it has no
    ``[B, L]`` ``attention_mask`` (then every position counts; a 4-D additive mask says nothing of padding)."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if not torch.is_tensor(mask) or mask.dim() != 2:
        return None
    return mask.bool()


def _real_rows(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` [..., d] flattened to ``[tokens, d]``, keeping only the rows at real positions when ``x`` is laid
    out ``[B, L, ..., d]`` like the batch's mask (a module that sees another layout keeps every row)."""
    if keep is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(keep.shape):
        x = x[keep.to(x.device)]
    return x.reshape(-1, x.shape[-1])


@torch.no_grad()
def collect_input_stats(
    model: nn.Module, modules: Mapping[str, nn.Module], calib, hessian: bool = False
) -> dict[str, InputStats]:
    """Run ``model`` over ``calib`` and return the input statistics of each module in ``modules``.

    Positions the batch's ``attention_mask`` marks as padding are left out of every statistic. The model runs
    in eval mode (restored afterwards). Raises ``ValueError`` if ``calib`` yields no batch or a module never
    receives an input.
    """
    stats: dict[str, InputStats] = {}
    keep: torch.Tensor | None = None  # real positions of the batch being run

    def make_hook(name):
        def hook(_mod, args):
            x = _real_rows(args[0].detach(), keep).double()  # (tokens, in)
            st = stats.get(name)
            if st is None:
                st = stats[name] = InputStats(
                    torch.zeros(x.shape[1], dtype=torch.float64, device=x.device),
                    0,
                    torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device) if hessian else None,
                )
            st.sq_sum += (x * x).sum(0)
            st.count += x.shape[0]
            if hessian:
                st.xtx += x.T @ x

        return hook

    handles = [mod.register_forward_pre_hook(make_hook(name)) for name, mod in modules.items()]
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for batch in iter_calib(calib):
            keep = token_mask(batch)
            run_model(model, batch)
            n_batches += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if n_batches == 0:
        raise ValueError("calibration data is empty: calib yielded no batch")
    missing = [name for name in modules if name not in stats]
    if missing:
        raise ValueError(f"calibration never reached layer {missing[0]!r} ({len(missing)} layers not reached)")
    return stats


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    n: int = 2,
    m: int = 4,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT N:M pruning of one ``[out, in]`` weight; returns ``(new_weight, keep_mask)``.

    Follows Algorithm 1 of Frantar & Alistarh (2023) and the reference implementation: dampened Hessian,
    upper Cholesky factor of its inverse, lazy block updates. The loop runs over input columns (the algorithm
    is sequential in them); rows are processed together.
    """
    from .nm import _check_nm

    _check_nm(n, m)
    W = weight.detach().clone().float()  # (R, C)
    R, C = W.shape
    if C % m:
        raise ValueError(f"input dimension {C} is not divisible by m={m}")
    if hessian.shape != (C, C):
        raise ValueError(f"hessian shape {tuple(hessian.shape)} does not match input dimension {C}")
    blocksize = max(m, blocksize - blocksize % m)
    H = hessian.detach().clone().float().to(W.device)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += percdamp * torch.diag(H).mean() * torch.eye(C, device=W.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, C, blocksize):
        i2 = min(i1 + blocksize, C)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)  # True = pruned
        for i in range(i2 - i1):
            if i % m == 0:
                sal = W1[:, i : i + m] ** 2 / d1[None, i : i + m] ** 2  # OBS saliency, (R, m)
                mask1.scatter_(1, i + sal.topk(m - n, dim=1, largest=False).indices, True)
            w = W1[:, i]
            q = torch.where(mask1[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.to(weight.dtype), ~pruned
