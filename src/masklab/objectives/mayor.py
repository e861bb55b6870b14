"""MAYOR's mask-head objective on dense scenes (Qin et al., ACM MM 2021, Sec. 3.2): the per-pixel binary
cross-entropy of each RoI's mask logits (Mask R-CNN's mask loss) against its target, which is the proposal's own
instance (``targets="instance"``, instance-aware mask learning) or every foreground pixel in the proposal
(``targets="plain"``, text/non-text classification). Targets are the ground truth RoIAligned to the mask size and
thresholded at 0.5, as Mask R-CNN crops its targets.

Each image contributes up to ``rois`` of its instances (a keyed choice), each with a keyed jittered box
(:func:`masklab.seg.mayor.jitter_boxes`). The evaluation takes every held-out instance, pastes its mask, and reports
the mean instance IoU against the instance's own pixels, the share of predicted pixels that belong to other
instances (``leak``), and COCO mask AP through :func:`masklab.seg.cocoeval.evaluate` (one category; each mask's
score is its mean probability over its pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.objectives.base import Objective, eval_batches
from masklab.seg.mayor import TARGETS, DenseLayout, RoIMaskNet, jitter_boxes, paste_masks, roi_align
from masklab.seg.nets import multiply_positions, position_groups

__all__ = ["MayorObjective"]

STREAM_PICK = 0x3A72  # keyed stream of the RoIs sampled per image


class MayorObjective(Objective):
    """Mask BCE of a :class:`RoIMaskNet` with instance-aware or plain pixel targets."""

    name = "mayor"
    eval_batch_size = 16

    def __init__(self, model: RoIMaskNet, layout: DenseLayout, targets: str = "instance", rois: int = 12):
        super().__init__(model)
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if rois < 1:
            raise ValueError(f"rois must be positive, got {rois}")
        self.layout, self.targets, self.rois = layout, targets, rois
        self.positions: dict[int, float] = {}

    def proposals(self, b: dict, keys: torch.Tensor, limit: int | None):
        """(image index (K,), instance id (K,), proposal boxes x0, y0, x1, y1 (K, 4)) of the instances taken:
        up to ``limit`` per image by a keyed choice (all when None), each box jittered on its own key."""
        boxes = b["boxes"]  # (B, slots, 4)
        B, Q = boxes.shape[:2]
        valid = boxes[..., 2] > 0
        if limit is not None and limit < Q:
            score = keyed.uniform(keys, Q, STREAM_PICK).to(boxes.device).masked_fill(~valid, 2.0)
            rank = score.argsort(1).argsort(1)
            valid &= rank < limit
        image, slot = valid.nonzero(as_tuple=True)
        slot_keys = keyed.derive(keys.to(slot.device)[image], slot)
        return image, slot + 1, jitter_boxes(boxes[image, slot], slot_keys, self.layout.size)

    def target_masks(self, b: dict, image: torch.Tensor, ids: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(K, M, M) float targets: the instance's own pixels, or every foreground pixel, RoIAligned, >= 0.5."""
        inst = b["instances"][image]  # (K, S, S)
        full = (inst == ids[:, None, None]) if self.targets == "instance" else (inst > 0)
        k = torch.arange(len(ids), device=ids.device)
        cropped = roi_align(full[:, None].float(), rois, k, self.model.out, self.layout.size)[:, 0]
        return (cropped >= 0.5).float()

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.layout.unpack(rows.to(self.device))
        image, ids, rois = self.proposals(b, keys, self.rois)
        logits = self.model(b["pixels"], rois, image).float()  # (K, M, M)
        target = self.target_masks(b, image, ids, rois)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        return loss, {"pixel_acc": ((logits > 0) == (target > 0)).float().mean().detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training loss, then every instance of the held-out scenes: mean instance IoU, leak and COCO mask AP."""
        from masklab.seg.cocoeval import evaluate as coco_evaluate
        from masklab.seg.rle import rle_encode

        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        S = self.layout.size
        ious, leaks, images, anns, dets = [], [], [], [], []
        for rows, keys, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = self.layout.unpack(rows.to(self.device))
            image, ids, rois = self.proposals(b, keys, None)
            probs = paste_masks(self.model(b["pixels"], rois, image).sigmoid(), rois, S)  # (K, S, S)
            pred = probs > 0.5
            inst = b["instances"][image]
            own, others = inst == ids[:, None, None], (inst > 0) & (inst != ids[:, None, None])
            inter, union = (pred & own).flatten(1).sum(1), (pred | own).flatten(1).sum(1)
            ious += (inter / union.clamp(min=1)).tolist()
            leaks += ((pred & others).flatten(1).sum(1) / pred.flatten(1).sum(1).clamp(min=1)).tolist()
            first = len(images)
            for i in range(len(rows)):
                images.append({"id": first + i + 1, "height": S, "width": S})
                for k in range(int((b["boxes"][i, :, 2] > 0).sum())):
                    m = (b["instances"][i] == k + 1).cpu().numpy()
                    anns.append({"id": len(anns) + 1, "image_id": first + i + 1, "category_id": 1,
                                 "segmentation": rle_encode(m), "area": float(m.sum()),
                                 "bbox": [float(v) for v in b["boxes"][i, k]], "iscrowd": 0})  # fmt: skip
            score = (probs * pred).flatten(1).sum(1) / pred.flatten(1).sum(1).clamp(min=1)
            keep = pred.flatten(1).any(1)  # an empty mask is no detection
            for k in keep.nonzero()[:, 0].tolist():
                dets.append({"image_id": first + int(image[k]) + 1, "category_id": 1, "score": float(score[k]),
                             "segmentation": rle_encode(pred[k].cpu().numpy())})  # fmt: skip
        self.train(was)
        gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "glyph"}]}
        summary = coco_evaluate(gt, dets, iou_type="segm").summary
        out.update(instance_iou=sum(ious) / len(ious), leak=sum(leaks) / len(leaks), instances=len(ious))
        out.update(AP=summary["AP"], AP50=summary["AP50"], AP75=summary["AP75"])
        return out

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the example's pixels."""
        b = self.layout.unpack(rows)
        image, _, rois = self.proposals(b, keys, self.rois)
        self.positions = multiply_positions(self.model, lambda: self.model(b["pixels"], rois, image), len(rows))
        return self.layout.size**2

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.layout.size**2)
