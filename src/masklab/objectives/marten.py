"""VQAMask (Marten, CVPR 2025): the language-model loss of the answer plus, with weight ``mask_weight``, the mask
generator's loss on the mask of all visual text (here: every object on the canvas), from the shared model's
visual-token outputs. ``mask_weight = 0`` trains the same reader on the answer alone (it has no mask generator).

The mask loss is the mean sigmoid BCE over pixels plus the dice loss ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)``
(:func:`masklab.seg.pmp.match_cost` for one mask), on the generator's 32 x 32 logits upsampled to the image. The
evaluation reports the answer accuracy (``acc``: the argmax over the whole vocabulary is the class word), which
never uses the mask generator, the floor ``majority`` (the share of the most frequent held-out answer: a reader
that always gives it scores that), and, when there is one, the held-out IoU of the generator's mask (``mask_iou``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.objectives.base import Objective, eval_batches
from masklab.seg.marten import MartenLayout, Reader
from masklab.seg.nets import multiply_positions, position_groups
from masklab.seg.pmp import match_cost, proposal_ious

__all__ = ["MartenObjective"]


class MartenObjective(Objective):
    """Answer cross-entropy + ``mask_weight`` x (BCE + dice) of the mask generator of a :class:`Reader`."""

    name = "marten"
    eval_batch_size = 64

    def __init__(self, model: Reader, layout: MartenLayout, mask_weight: float = 1.0):
        super().__init__(model)
        if mask_weight < 0 or (mask_weight > 0) != (model.mask_head is not None):
            raise ValueError(f"mask_weight must be > 0 with a mask generator and 0 without, got {mask_weight}")
        self.layout, self.mask_weight = layout, float(mask_weight)
        self.positions: dict[int, float] = {}

    def _mask_logits(self, cells: torch.Tensor) -> torch.Tensor:
        S = self.layout.size
        logits = self.model.mask_head(cells)[:, None]  # (B, 1, 32, 32)
        return F.interpolate(logits, size=(S, S), mode="bilinear", align_corners=False)[:, 0]  # (B, S, S)

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.layout.unpack(rows.to(self.device))
        logits, cells = self.model(b["pixels"], b["question"])
        ce = F.cross_entropy(logits.float(), b["answer"])
        stats = {"answer_ce": ce.detach(), "train_acc": (logits.argmax(-1) == b["answer"]).float().mean()}
        if not self.mask_weight:
            return ce, stats
        mask = match_cost(self._mask_logits(cells)[:, None], b["mask"]).mean()  # BCE + dice
        return ce + self.mask_weight * mask, {**stats, "mask_loss": mask.detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training losses, then answer accuracy (``acc``) and, with a mask generator, ``mask_iou``."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        right = n = 0
        ious, answers = [], []
        for rows, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = self.layout.unpack(rows.to(self.device))
            logits, cells = self.model(b["pixels"], b["question"])
            right += int((logits.argmax(-1) == b["answer"]).sum())
            answers.append(b["answer"])
            n += len(rows)
            if self.model.mask_head is not None:
                ious.append(proposal_ious(self._mask_logits(cells)[:, None] > 0, b["mask"])[:, 0])
        self.train(was)
        majority = int(torch.cat(answers).unique(return_counts=True)[1].max())
        out.update({"acc": right / n, "majority": majority / n, "examples": n})
        if ious:
            out["mask_iou"] = float(torch.cat(ious).mean())
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the example's pixels."""
        b = self.layout.unpack(rows)

        def run():
            _, cells = self.model(b["pixels"], b["question"])
            if self.mask_weight:
                self._mask_logits(cells)

        self.positions = multiply_positions(self.model, run, len(rows))
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
