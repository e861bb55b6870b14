"""Generative mask classification (OSM, Yu et al. 2023; reference github.com/bytedance/OmniScient-Model) on
canvases, or a closed-set classifier head on the same MaskQFormer tokens.

Every object of a canvas is classified from its ground-truth mask and from one keyed proposal of it (a target IoU
uniform in [``low_iou``, 0.95], made by :func:`masklab.seg.mask_adapter.perturb`, the proposal generator of
Mask-Adapter): OSM is trained on a mask generator's proposals, which cover their object only partly. The generative
head's loss is the next-letter cross-entropy of the class name (+ ``<eos>``) over every letter of every object
(the LLM loss on the answer); the closed-set head's loss is the class cross-entropy.

The evaluation answers every held-out object from its ground-truth mask (``acc@1``) and from proposals at four
target IoUs (0.55, 0.65, 0.75, 0.85; ``acc@prop``, all proposals of actual IoU >= 0.5); an answer is right when it
is exactly the class name. For the generative head, ``unknown`` is the share of answers that are no class name at
all (an open-vocabulary answer outside the world's 14 names).
"""

from __future__ import annotations

import torch

from masklab.corrupt import keyed
from masklab.objectives.base import Objective, eval_batches
from masklab.seg.mask_adapter import STREAM_IOU, STREAM_NOISE, MaskLayout, perturb, smooth_noise
from masklab.seg.nets import multiply_positions, position_groups
from masklab.seg.osm import LABEL_WORDS, OSMClassifier

__all__ = ["OSMObjective", "EVAL_TARGETS"]

EVAL_TARGETS = (0.55, 0.65, 0.75, 0.85)  # proposal IoUs answered per held-out object
STREAM_SLOT = 0x05A0  # keyed stream of the per-object proposal keys


def proposals(sdf: torch.Tensor, keys: torch.Tensor, target: torch.Tensor, stream: int = 0):
    """Proposals (B, Q, S, S) and their IoUs (B, Q) at ``target`` IoUs (B, Q): the noise of object q of example b
    is keyed on (keys[b], q, ``stream``)."""
    B, Q, S, _ = sdf.shape
    slot = torch.arange(Q, device=keys.device).repeat(B) + Q * stream
    slot_keys = keyed.derive(keys.repeat_interleave(Q), slot + STREAM_SLOT)
    noise = smooth_noise(slot_keys, S, STREAM_NOISE).to(sdf.device)
    masks, ious = perturb(sdf.flatten(0, 1), target.reshape(-1).to(sdf.device), noise)
    return masks.view(B, Q, S, S), ious.view(B, Q)


class OSMObjective(Objective):
    """Class names written by an :class:`OSMClassifier` (or its closed-set head) for ground-truth and proposal
    masks."""

    name = "osm"
    eval_batch_size = 32

    def __init__(self, model: OSMClassifier, layout: MaskLayout, low_iou: float = 0.5):
        super().__init__(model)
        if not 0 <= low_iou < 0.95:
            raise ValueError(f"low_iou must be in [0, 0.95), got {low_iou}")
        self.layout, self.low_iou = layout, float(low_iou)
        self.positions: dict[int, float] = {}

    def _train_masks(self, sdf: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, 2Q, S, S): every ground-truth mask, then a proposal of it at a keyed target IoU."""
        B, Q = sdf.shape[:2]
        slot_keys = keyed.derive(keys.repeat_interleave(Q), torch.arange(Q, device=keys.device).repeat(B))
        u = keyed.uniform(slot_keys, 1, STREAM_IOU)[:, 0].view(B, Q).to(sdf.device)
        proposal, _ = proposals(sdf, keys, self.low_iou + (0.95 - self.low_iou) * u)
        return torch.cat([sdf > 0, proposal], 1)

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.layout.unpack(rows.to(self.device))
        masks = self._train_masks(b["sdf"], keys.to(self.device))
        tokens = self.model.tokens(self.model.features(b["pixels"]), masks)  # (B, 2Q, K, D)
        loss, right = self.model.loss(tokens, torch.cat([b["labels"], b["labels"]], 1))
        return loss, {"train_acc": right.float().mean().detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training losses, then the share of exact class names answered for ground-truth masks (``acc@1``) and
        for proposals of IoU >= 0.5 (``acc@prop``), and (generative head) the share of answers that name no
        class (``unknown``)."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        tally = {"gt": [0, 0], "prop": [0, 0], "unknown": [0, 0]}
        for rows, keys, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = self.layout.unpack(rows.to(self.device))
            labels, keys = b["labels"], keys.to(self.device)
            valid = labels >= 0
            features = self.model.features(b["pixels"])
            tests = [("gt", b["sdf"] > 0, valid)]
            for k, t in enumerate(EVAL_TARGETS):
                masks, ious = proposals(b["sdf"], keys, torch.full(labels.shape, t), stream=1 + k)
                tests.append(("prop", masks, valid & (ious >= 0.5)))
            for kind, masks, use in tests:
                answers = self.model.predict(self.model.tokens(features, masks)[use])
                truth = [LABEL_WORDS[int(c)] for c in labels[use]]
                tally[kind][0] += sum(a == t for a, t in zip(answers, truth, strict=True))
                tally[kind][1] += len(truth)
                tally["unknown"][0] += sum(a not in LABEL_WORDS for a in answers)
                tally["unknown"][1] += len(answers)
        self.train(was)
        for name, key in (("gt", "acc@1"), ("prop", "acc@prop"), ("unknown", "unknown")):
            r, n = tally[name]
            out[key] = r / n if n else float("nan")
        out["n@1"], out["n@prop"] = tally["gt"][1], tally["prop"][1]
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the example's pixels."""
        b = self.layout.unpack(rows)
        masks = self._train_masks(b["sdf"], keys)
        labels = torch.cat([b["labels"], b["labels"]], 1)

        def run():
            self.model.loss(self.model.tokens(self.model.features(b["pixels"]), masks), labels)

        self.positions = multiply_positions(self.model, run, len(rows))
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
