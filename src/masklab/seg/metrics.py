"""Referring-segmentation metrics: per-sample IoU, gIoU, cIoU and precision at IoU thresholds.

Definitions (as used by LISA, Lai et al., CVPR 2024, Sec. 5.1, and the referring-segmentation literature, e.g.
LAVT, Yang et al., CVPR 2022):

* IoU of one sample: |P & T| / |P | T|.
* gIoU ("generalized IoU" in reasoning segmentation; not the box gIoU of Rezatofighi et al.): the mean of the
  per-sample IoUs.
* cIoU ("cumulative IoU", also "overall IoU"): the sum of intersections over the sum of unions, over all
  samples.
* Pr@t: the fraction of samples whose IoU is at least t (``>=``, as in LAVT's evaluation).

**Empty-target rule.** A sample whose union is empty (empty prediction and empty target) has IoU ``empty``,
1.0 by default: the LISA convention (its evaluation adds 1 where ``union == 0``), i.e. correctly predicting
"nothing" is a perfect answer. An empty target with a non-empty prediction has IoU 0. Pass ``empty=nan`` to
exclude such samples from gIoU (they are then ignored by ``nanmean``) and from Pr@t. They add nothing to
cIoU's sums; cIoU is ``empty`` when every union is empty. LISA divides by ``union + 1e-5``; masklab divides
exactly.

Masks are [B, H, W] or [H, W], numpy or torch, any device; nonzero means foreground (threshold logits
first)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["intersection_union", "iou", "giou", "ciou", "precision_at", "summarize"]

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)  # the usual Pr@ columns


def _t(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))


def intersection_union(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample |P & T| and |P | T| as int64 [B] (a 2-D input is one sample)."""
    p, t = _t(pred), _t(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if p.dim() not in (2, 3):
        raise ValueError(f"masks must be [H, W] or [B, H, W], got shape {tuple(p.shape)}")
    if p.dim() == 2:
        p, t = p[None], t[None]
    p = (p != 0).flatten(1)
    t = (t.to(p.device) != 0).flatten(1)
    return (p & t).sum(1), (p | t).sum(1)


def iou(pred, target, empty: float = 1.0) -> torch.Tensor:
    """Per-sample IoU, float64 [B]; ``empty`` where the union is empty (see the module docstring)."""
    inter, union = intersection_union(pred, target)
    out = inter.double() / union.clamp(min=1).double()
    return torch.where(union == 0, torch.full_like(out, empty), out)


def giou(pred, target, empty: float = 1.0) -> float:
    """Mean of per-sample IoU (NaN samples, from ``empty=nan``, are left out)."""
    return float(torch.nanmean(iou(pred, target, empty)))


def ciou(pred, target, empty: float = 1.0) -> float:
    """Sum of intersections over sum of unions; ``empty`` when every union is empty."""
    inter, union = intersection_union(pred, target)
    total = int(union.sum())
    return float(empty) if total == 0 else int(inter.sum()) / total


def precision_at(ious, thresholds: Sequence[float] = THRESHOLDS) -> dict[float, float]:
    """Fraction of samples with IoU >= t, for each threshold t (NaN IoUs are left out)."""
    v = _t(ious).double().reshape(-1)
    v = v[~torch.isnan(v)]
    return {float(t): (float((v >= t).double().mean()) if len(v) else math.nan) for t in thresholds}


def summarize(
    inters: Sequence[int], unions: Sequence[int], empty: float = 1.0, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, float]:
    """gIoU, cIoU and Pr@t from per-sample intersection and union counts collected over a dataset."""
    i = torch.as_tensor(inters, dtype=torch.float64).reshape(-1)
    u = torch.as_tensor(unions, dtype=torch.float64).reshape(-1)
    if i.shape != u.shape or (i > u).any() or (i < 0).any():
        raise ValueError("need one intersection <= union per sample, both non-negative")
    per = torch.where(u == 0, torch.full_like(i, empty), i / u.clamp(min=1))
    cum = float(empty) if u.sum() == 0 else float(i.sum() / u.sum())
    out = {"gIoU": float(torch.nanmean(per)), "cIoU": cum}
    out.update({f"Pr@{t:g}": v for t, v in precision_at(per, thresholds).items()})
    return out
