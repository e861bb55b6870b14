"""Mask classification on canvases with mask pooling or Mask-Adapter (Li et al., CVPR 2025; reference
``fcclip/fcclip.py``): the cross-entropy of each object's class from its ground-truth mask and from a proposal of
the same object (mixed-mask training, Sec. 3.3), plus, when ``consistency > 0``, the mask-consistency loss
``consistency * (1 - cos(e(proposal), e(ground truth).detach()))`` over the proposals whose IoU exceeds 0.7.

Training has the reference's two stages (Sec. 3.3): for the first ``gt_warmup`` optimizer steps only the
ground-truth masks are classified (ground-truth mask warmup: CE alone), then each object is classified from its
ground-truth mask and a proposal, with the consistency loss (mixed-mask training). ``updates`` counts optimizer
steps in a buffer (saved with the objective's state, so a resumed run resumes its stage). In the warmup each
ground-truth mask also stands in for its proposal, so every step embeds the same number of masks (one FLOP count
for the run) and the loss is exactly the ground-truth masks' CE.

Proposals (:func:`masklab.seg.mask_adapter.perturb`) are drawn per object from its key: a target IoU uniform in
[``low_iou``, 0.95] and a keyed noise field. The evaluation classifies, for every held-out object, its ground-truth
mask and proposals at ten target IoUs (0.525 ... 0.975), and reports accuracy by the proposals' actual IoU in bins of
0.1 (``acc@0.5`` is IoU in [0.5, 0.6), ...) and at IoU 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.objectives.base import Objective, eval_batches
from masklab.seg.mask_adapter import STREAM_IOU, STREAM_NOISE, MaskClassifier, MaskLayout, perturb, smooth_noise
from masklab.seg.nets import multiply_positions, position_groups

__all__ = ["MaskAdapterObjective"]

MATCH_IOU = 0.7  # the reference's IOU_THRESHOLD: proposals above it are pulled to their ground truth
EVAL_TARGETS = tuple(0.525 + 0.05 * k for k in range(10))  # proposal IoUs tested per object
EVAL_BINS = (0.5, 0.6, 0.7, 0.8, 0.9)  # accuracy by actual IoU in [b, b + 0.1)


class MaskAdapterObjective(Objective):
    """CE on ground-truth and proposal masks (+ mask consistency) of a :class:`MaskClassifier`."""

    name = "mask-adapter"
    eval_batch_size = 32

    def __init__(self, model: MaskClassifier, layout: MaskLayout, consistency: float = 5.0, low_iou: float = 0.5,
                 gt_warmup: int = 0):  # fmt: skip
        super().__init__(model)
        if consistency < 0 or not 0 <= low_iou < 0.95:
            raise ValueError(f"consistency must be >= 0 and low_iou in [0, 0.95), got {consistency} and {low_iou}")
        if isinstance(gt_warmup, bool) or not isinstance(gt_warmup, int) or gt_warmup < 0:
            raise ValueError(f"gt_warmup must be a non-negative int, got {gt_warmup!r}")
        self.layout, self.consistency, self.low_iou = layout, float(consistency), float(low_iou)
        self.gt_warmup = gt_warmup
        self.register_buffer("updates", torch.zeros((), dtype=torch.float64))  # optimizer steps taken
        self.positions: dict[int, float] = {}

    def proposals(self, sdf: torch.Tensor, keys: torch.Tensor, target: torch.Tensor | None = None, stream: int = 0):
        """Proposals (B, Q, S, S) and their IoUs (B, Q) for every slot: noise and (if ``target`` is None) target
        IoU keyed on (example key, slot, ``stream``)."""
        B, Q, S, _ = sdf.shape
        slot_keys = keyed.derive(keys.repeat_interleave(Q), torch.arange(Q, device=keys.device).repeat(B) + 16 * stream)
        if target is None:
            u = keyed.uniform(slot_keys, 1, STREAM_IOU)[:, 0].to(sdf.device)
            target = self.low_iou + (0.95 - self.low_iou) * u
        noise = smooth_noise(slot_keys, S, STREAM_NOISE).to(sdf.device)
        masks, ious = perturb(sdf.flatten(0, 1), target.reshape(-1).to(sdf.device), noise)
        return masks.view(B, Q, S, S), ious.view(B, Q)

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.layout.unpack(rows.to(self.device))
        warm = int(self.updates.item() + 1e-9) < self.gt_warmup  # stage 1: ground-truth masks only
        if self.training:  # a micro-batch is its share of one optimizer step
            self.updates += len(rows) / ctx.get("batch_size", len(rows))
        labels, Q = b["labels"], self.layout.slots
        if warm:  # the proposals are the ground truth: CE on ground-truth masks at the mixed stage's compute
            proposal, ious = b["sdf"] > 0, torch.ones(labels.shape, device=labels.device)
        else:
            proposal, ious = self.proposals(b["sdf"], keys)
        features = self.model.features(b["pixels"])
        e = self.model.embed(features, torch.cat([b["sdf"] > 0, proposal], 1))  # (B, 2Q, D)
        logits = self.model.logits(e).float()
        target = torch.cat([labels, labels], 1)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-1)
        matched = (labels >= 0) & (ious > MATCH_IOU)  # (B, Q)
        cos = F.cosine_similarity(e[:, Q:], e[:, :Q].detach(), dim=-1)
        mc = ((1 - cos) * matched).sum() / matched.sum().clamp(min=1)
        loss = ce + self.consistency * mc if self.consistency and not warm else ce
        right = (logits.argmax(-1) == target)[target >= 0].float()
        return loss, {"ce": ce.detach(), "consistency": mc.detach(), "train_acc": right.mean().detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training losses, then accuracy on ground-truth masks (``acc@1``) and on proposals by actual IoU bin."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        right = {b: [0, 0] for b in (*EVAL_BINS, 1.0)}
        for rows, keys, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = self.layout.unpack(rows.to(self.device))
            labels, valid = b["labels"], b["labels"] >= 0
            features = self.model.features(b["pixels"])
            tests = [(b["sdf"] > 0, torch.ones_like(labels, dtype=torch.float32))]
            for k, t in enumerate(EVAL_TARGETS):
                tests.append(self.proposals(b["sdf"], keys.to(self.device), torch.full(labels.shape, t), stream=1 + k))
            for masks, ious in tests:
                ok = self.model.logits(self.model.embed(features, masks)).argmax(-1) == labels
                for lo in right:
                    inside = valid & ((ious >= 1.0) if lo == 1.0 else (ious >= lo) & (ious < lo + 0.1))
                    right[lo][0] += int((ok & inside).sum())
                    right[lo][1] += int(inside.sum())
        self.train(was)
        for lo, (r, n) in right.items():
            out["acc@1" if lo == 1.0 else f"acc@{lo:g}"] = r / n if n else float("nan")
            out["n@1" if lo == 1.0 else f"n@{lo:g}"] = n
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the example's pixels."""
        b = self.layout.unpack(rows)
        proposal, _ = self.proposals(b["sdf"], keys)
        masks = torch.cat([b["sdf"] > 0, proposal], 1)

        def run():
            self.model.logits(self.model.embed(self.model.features(b["pixels"]), masks))

        self.positions = multiply_positions(self.model, run, len(rows))
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
