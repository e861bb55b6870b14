"""Prompt-guided Mask Proposal (PMP, Li et al. 2024) on canvas referring examples: a query-based proposer trained
to put the referred object among its proposals, with or without reading the expression.

Training follows Mask2Former's set loss with one target (each canvas referring example names one object): the
proposals are matched to the target by the reference matcher's cost (mean sigmoid BCE + dice,
:func:`masklab.seg.pmp.match_cost`), so with one target the matched query is the one of least cost; the loss is
the matched mask's BCE + dice (weights 5 and 5, Mask2Former's ``MASK_WEIGHT`` and ``DICE_WEIGHT``) and the
cross-entropy of the scores over the queries with the matched query as the class (weight 2, ``CLASS_WEIGHT``;
Mask2Former's per-query object / no-object classification, here a softmax because exactly one query is matched).
Mask logits are upsampled from 32 x 32 to the image before the loss (the reference samples points instead).

The evaluation thresholds every proposal at 0 and reports, over held-out referring examples, the recall at IoU 0.5
of the referred object among all ``N`` proposals (``R@0.5``, the two-stage question "is the target among the
proposals?"), among the top-scored one (``R1@0.5``), and the mean best IoU (``best_iou``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.objectives.base import Objective, eval_batches
from masklab.seg.models.rows import Batch, Layout
from masklab.seg.nets import multiply_positions, position_groups
from masklab.seg.pmp import Proposer, match_cost, proposal_ious

__all__ = ["PMPObjective", "MASK_WEIGHT", "DICE_WEIGHT", "CLASS_WEIGHT"]

MASK_WEIGHT, DICE_WEIGHT, CLASS_WEIGHT = 5.0, 5.0, 2.0  # Mask2Former's loss weights


class PMPObjective(Objective):
    """Mask2Former's one-target set loss on a :class:`Proposer` (with or without the prompt)."""

    name = "pmp"
    eval_batch_size = 64

    def __init__(self, model: Proposer, layout: Layout):
        super().__init__(model)
        self.layout = layout
        self.positions: dict[int, float] = {}

    def _predict(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        masks, scores = self.model(b.pixels, b.prompt)
        S = self.layout.size
        return F.interpolate(masks, size=(S, S), mode="bilinear", align_corners=False), scores  # (B, N, S, S)

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = Batch.unpack(rows.to(self.device), self.layout)
        logits, scores = self._predict(b)
        matched = match_cost(logits.detach(), b.mask).argmin(1)  # (B,): the one target's query
        mine = logits[torch.arange(len(logits), device=logits.device), matched]  # (B, S, S)
        t = b.mask.float()
        bce = F.binary_cross_entropy_with_logits(mine, t)
        p = mine.sigmoid().flatten(1)
        dice = (1 - (2 * (p * t.flatten(1)).sum(-1) + 1) / (p.sum(-1) + t.flatten(1).sum(-1) + 1)).mean()
        ce = F.cross_entropy(scores.float(), matched)
        loss = MASK_WEIGHT * bce + DICE_WEIGHT * dice + CLASS_WEIGHT * ce
        return loss, {"bce": bce.detach(), "dice": dice.detach(), "score_ce": ce.detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training losses, then ``R@0.5`` (any proposal), ``R1@0.5`` (the top-scored one) and ``best_iou``."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        any_hit = top_hit = best = n = 0.0
        for rows, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = Batch.unpack(rows.to(self.device), self.layout)
            logits, scores = self._predict(b)
            ious = proposal_ious(logits > 0, b.mask)  # (B, N)
            top = ious.gather(1, scores.argmax(1, keepdim=True))[:, 0]
            any_hit += float((ious.max(1).values >= 0.5).sum())
            top_hit += float((top >= 0.5).sum())
            best += float(ious.max(1).values.sum())
            n += len(rows)
        self.train(was)
        out.update({"R@0.5": any_hit / n, "R1@0.5": top_hit / n, "best_iou": best / n, "examples": int(n)})
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the example's pixels."""
        b = Batch.unpack(rows, self.layout)
        self.positions = multiply_positions(self.model, lambda: self.model(b.pixels, b.prompt), len(rows))
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
