"""Selection functions shared by the token, patch and frame masks: where a call's randomness comes from, which
entries are the k smallest, and the range checks on rates.

Every selection breaks ties by position (the earlier entry counts as smaller): keyed draws have 24 or 32 bits
and do tie, and ``topk`` orders ties differently on CPU and CUDA, so this rule is what keeps masks identical on
every device.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from masklab.corrupt import keyed

__all__ = ["Source", "smallest_k", "smallest_indices", "select_count", "check_prob", "check_ratio"]


class Source:
    """Where the randomness of one call comes from: keyed noise per example, or a torch.Generator.

    ``keys`` [B] from :func:`keyed.example_keys`, or ``seed`` (int, with ``epoch``; rows are example indices
    0..B-1; None means 0), or ``seed`` as a ``torch.Generator`` (then ``torch.rand`` with it, in call order).
    """

    def __init__(self, batch, keys, seed, epoch, device):
        if keys is not None:
            keys = torch.as_tensor(keys, dtype=torch.int64, device=device)
            if keys.dim() != 1:
                raise ValueError(f"keys must be a [B] tensor, got shape {tuple(keys.shape)}")
            if batch is not None and batch != keys.shape[0]:
                raise ValueError(f"batch {batch} does not match {keys.shape[0]} keys")
            self.gen, self.keys, self.batch, self.device = None, keys, keys.shape[0], keys.device
        else:
            if batch is None or int(batch) < 0:
                raise ValueError(f"batch must be a non-negative int when no keys are given, got {batch}")
            if device is None and isinstance(seed, torch.Generator):
                device = seed.device  # draws stay where the generator lives
            self.batch, self.device = int(batch), torch.device(device or "cpu")
            if isinstance(seed, torch.Generator):
                self.gen, self.keys = seed, None
            else:
                self.gen = None
                self.keys = keyed.example_keys(
                    0 if seed is None else int(seed), epoch, torch.arange(self.batch), device=self.device
                )

    def uniform(self, n: int, stream: int) -> torch.Tensor:
        """[B, n] floats in [0, 1): :func:`keyed.uniform`, or ``torch.rand`` from the generator."""
        if self.gen is not None:
            return torch.rand(self.batch, n, generator=self.gen, device=self.gen.device).to(self.device)
        return keyed.uniform(self.keys, n, stream)

    def order(self, n: int, stream: int) -> torch.Tensor:
        """[B, n] values whose order within a row is uniformly random, for top-k: keyed uint32 draws in int64
        (:func:`keyed.bits`, ties about n**2 / 2**33 per row, broken by position), or floats from the
        generator."""
        if self.gen is not None:
            return self.uniform(n, stream)
        return keyed.bits(self.keys, n, stream)


def smallest_k(score, k):
    """[B, N] bool: True at the ``k`` smallest entries of each row of ``score`` (torch tensor or numpy array;
    the result is the same kind). ``k`` is one count for every row or one per row ([B] ints). Ties count the
    earlier position as smaller, so counts are exact and the answer is the same on every device.

    Each row's k-th value comes from a partial sort (``np.partition`` on the CPU, whose per-call cost is a
    fraction of a torch ``topk``; ``kthvalue`` or a sort elsewhere), then one compare; only a tie at that value
    needs a running count.
    """
    if torch.is_tensor(score):
        if score.device.type == "cpu":
            k = k.cpu().numpy() if torch.is_tensor(k) else k
            return torch.from_numpy(smallest_k(score.detach().numpy(), k))
        return _smallest_k_torch(score, k)
    B, N = score.shape
    if np.ndim(k) == 0:
        k = int(k)
        if k <= 0 or k >= N:
            return np.full((B, N), k > 0)
        kth = np.partition(score, k - 1, axis=1)[:, k - 1 : k]
        total = B * k
    else:  # per-row counts: partition at the largest, sort those few, read each row's own k-th value
        k = np.asarray(k, dtype=np.int64).reshape(B, 1)
        if B and (k.min() < 0 or k.max() > N):
            k = k.clip(0, N)
        kmax = int(k.max()) if B else 0
        low = np.sort(np.partition(score, kmax - 1, axis=1)[:, :kmax] if 0 < kmax < N else score, axis=1)
        kth = low[np.arange(B), np.maximum(k[:, 0] - 1, 0)][:, None]
        total = int(k.sum())
    out = score <= kth
    if np.count_nonzero(out) != total:  # a tie at a k-th value (or k = 0 rows): the earliest equal entries win
        lt, eq = score < kth, score == kth
        out = lt | (eq & (eq.cumsum(1) <= k - lt.sum(1, keepdims=True)))
    return out


def _smallest_k_torch(score: torch.Tensor, k) -> torch.Tensor:
    """:func:`smallest_k` in torch (any device): the same rule."""
    B, N = score.shape
    if not torch.is_tensor(k) and np.ndim(k) == 0:
        k = int(k)
        if k <= 0 or k >= N:
            return torch.full((B, N), k > 0, device=score.device)
        kth = score.kthvalue(k, dim=1, keepdim=True).values
    else:
        k = torch.as_tensor(k, dtype=torch.long, device=score.device).clamp(0, N).reshape(B, 1)
        kth = score.sort(dim=1).values.gather(1, (k - 1).clamp(min=0))
    lt, eq = score < kth, score == kth
    return lt | (eq & (eq.cumsum(1) <= k - lt.sum(1, keepdim=True)))


def smallest_indices(score: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` smallest scores per row, ascending, ties to the lower index. ``topk`` breaks ties
    differently on CPU and CUDA, and 24-bit keyed uniforms do tie (~T**2 / 2**25 per row), which moved a span
    and the length paired with it between devices (found by benchmarks/gpu_corruption.py)."""
    return score.sort(dim=1, stable=True).indices[:, :n]


def select_count(can: torch.Tensor, u: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
    """Exactly min(count, eligible) positions per row, uniformly without replacement: the smallest keys win.

    Ties (24-bit keys) break by position (stable sort), so the result is the same on every device and padding.
    """
    score = torch.where(can, u, torch.full_like(u, 2.0))  # ineligible positions sort last
    rank = score.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    count = torch.as_tensor(count, device=can.device).reshape(-1, 1)
    return (rank < count) & can


def check_prob(name: str, p: float) -> float:
    """``p`` as a float in [0, 1]; strings, bools and NaN are refused (a string ``prob`` would otherwise reach
    ``prob * 2**32`` as string repetition)."""
    if isinstance(p, str | bytes | bool) or not isinstance(p, numbers.Real | torch.Tensor):
        raise TypeError(f"{name} must be a real number, got {type(p).__name__} {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # False for NaN too
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return p


def check_ratio(name: str, r: float) -> float:
    """``r`` as a float in [0, 1] (anything ``float`` takes; NaN is refused): the patch ratios, HPM's schedule
    and frames' ``mask_prob``."""
    if not 0.0 <= float(r) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {r}")
    return float(r)
