"""OneRef's Mask Referring Modeling with box regression (Xiao et al., NeurIPS 2024, Sec. 3.2-3.4; reference
``engine.train_one_epoch_with_mrefm`` and ``utils/loss_utils.one_ref_loss``), on canvas expressions.

Every example is either a MIM example (its image masked, its text whole) or an MLM example (its text masked, its
image whole), drawn from its key with probability 1/2; the reference alternates the two by optimizer step. On every
example the (masked) input also regresses the box: L1 (summed over cx, cy, w, h) + GIoU, and the box-mask
constraint on ``visu_sim`` (sigmoid focal x 20 + dice x 2 against the box at patch resolution, the reference's
``--enable_dynamic_mim`` losses). MIM examples add the masked patches' pixel regression (MSE on normalized pixels;
the reference: cross-entropy on VQ-KD ids) and the visual target-relation score's L1 (summed over its 4 values,
mean over patches); MLM examples add the masked words' cross-entropy and the semantic target-relation score's KL
divergence ``KL(softmax(labels) || softmax(prediction))`` over the words. All weights are 1, as in the reference.

Image masks: ``masking="referring"`` is OneRef's referring-aware dynamic masking
(:func:`masklab.corrupt.patches.referring_patches`: the box grown by one patch masked at 0.75, the rest at 0.35);
``masking="random"`` masks the same number of patches per image uniformly at random, so the two differ only in
where the masked patches are. Text masks follow ``_masking_on_text_tokens_v2``: ``max(1, int(0.4 n + 0.5))`` of the
n words, the subject first, then the other object, then uniformly; each masked word becomes ``<mask>`` (80%),
stays (10%) or becomes a random word (10%).

The evaluation regresses boxes from whole images and texts and reports grounding Acc@0.5 (box IoU >= 0.5, the
referring expression comprehension metric) and the mean box IoU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.corrupt.patches import referring_patches
from masklab.objectives.base import Objective, eval_batches
from masklab.seg.models.rows import Batch, Layout
from masklab.seg.nets import multiply_positions, position_groups
from masklab.seg.oneref import (
    OneTower,
    box_iou,
    box_of_masks,
    generalized_box_iou,
    semantic_scores,
    visual_scores,
    word_roles,
)

__all__ = ["OneRefObjective", "MASKINGS"]

MASKINGS = ("referring", "random")
STREAM_ROLE, STREAM_RANDOM, STREAM_TEXT, STREAM_REPLACE = 0x0E70, 0x0E71, 0x0E72, 0x0E73


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """RetinaNet's focal loss, averaged per row then over rows (the reference's ``loss.mean(1).sum() / B``)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean(1).mean()


def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference's dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)``, averaged over rows."""
    p = logits.sigmoid()
    return (1 - (2 * (p * target).sum(1) + 1) / (p.sum(1) + target.sum(1) + 1)).mean()


class OneRefObjective(Objective):
    """MRefM (referring-aware MIM and MLM with target-relation scores) + box regression of a :class:`OneTower`."""

    name = "oneref"
    eval_batch_size = 64

    def __init__(self, model: OneTower, tokenizer, layout: Layout, masking: str = "referring",
                 text_mask_prob: float = 0.4, mim_ratio: float = 0.35, inside_ratio: float = 0.75):  # fmt: skip
        super().__init__(model)
        if masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")
        for k, v in (("text_mask_prob", text_mask_prob), ("mim_ratio", mim_ratio), ("inside_ratio", inside_ratio)):
            if not 0 <= v <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {v}")
        self.tokenizer, self.layout, self.masking = tokenizer, layout, masking
        self.text_mask_prob, self.mim_ratio, self.inside_ratio = text_mask_prob, mim_ratio, inside_ratio
        self.mask_id = tokenizer.convert_tokens_to_ids("<mask>")
        self.first_word = tokenizer.convert_tokens_to_ids("the")  # ids below are specials and tags
        self.positions: dict[int, float] = {}

    # ----------------------------------------------------------------------------------------- masks
    def image_mask(self, boxes: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, N) bool patches to mask: referring-aware, or as many uniformly at random."""
        g, S = self.model.grid, self.layout.size
        xyxy = torch.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                            boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], 1) * S  # fmt: skip
        ref = referring_patches((g, g), boxes=xyxy.cpu(), image_size=(S, S), ratio=self.mim_ratio,
                                inside_ratio=self.inside_ratio, margin=1, keys=keys.cpu()).mask  # fmt: skip
        if self.masking == "referring":
            return ref.to(boxes.device)
        rank = keyed.uniform(keys.cpu(), g * g, STREAM_RANDOM).argsort(1).argsort(1)  # a uniform order per row
        return (rank < ref.sum(1, keepdim=True)).to(boxes.device)

    def text_mask(self, prompt: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked prompt, bool (B, P) masked words): subject, then anchor, then uniform; 80/10/10."""
        real = prompt != 0
        n = real.sum(1, keepdim=True)
        count = (n * self.text_mask_prob + 0.5).long().clamp(min=1).minimum(n)  # the reference's to_mask
        roles = word_roles(prompt, self.tokenizer)
        u = keyed.uniform(keys.cpu(), prompt.shape[1], STREAM_TEXT).to(prompt.device)
        order = torch.where(roles["subject"], -2.0, torch.where(roles["anchor"], -1.0, u)).masked_fill(~real, 9.0)
        masked = (order.argsort(1).argsort(1) < count) & real
        r = keyed.uniform(keys.cpu(), 2 * prompt.shape[1], STREAM_REPLACE).to(prompt.device)
        role, pick = r[:, : prompt.shape[1]], r[:, prompt.shape[1] :]
        vocab = len(self.tokenizer)
        random_word = self.first_word + (pick * (vocab - self.first_word)).long().clamp(max=vocab - 1 - self.first_word)
        new = torch.where(
            role < 0.8, torch.full_like(prompt, self.mask_id), torch.where(role < 0.9, prompt, random_word)
        )
        return torch.where(masked, new, prompt), masked

    # ----------------------------------------------------------------------------------------- losses
    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = Batch.unpack(rows.to(self.device), self.layout)
        box = box_of_masks(b.mask)
        mim = keyed.uniform(keys.cpu(), 1, STREAM_ROLE)[:, 0].to(box.device) < 0.5  # (B,) MIM rows, else MLM
        patch_mask = self.image_mask(box, keys) & mim[:, None]
        masked_prompt, words = self.text_mask(b.prompt, keys)
        prompt = torch.where(mim[:, None], b.prompt, masked_prompt)
        words &= ~mim[:, None]
        out = self.model(b.pixels, prompt, patch_mask)
        losses = self.grounding_losses(out, box)
        losses.update(self.mim_losses(out, b.pixels, box, patch_mask, mim))
        losses.update(self.mlm_losses(out, b.prompt, words, ~mim))
        loss = sum(losses.values())
        return loss, {k: v.detach() for k, v in losses.items()}

    def grounding_losses(self, out: dict, box: torch.Tensor) -> dict:
        g = self.model.grid
        l1 = F.l1_loss(out["box"], box, reduction="none").sum(1).mean()
        giou = (1 - generalized_box_iou(out["box"], box)).mean()
        region = box_mask(box, self.layout.size)  # (B, S, S) the box at pixel resolution
        patch_box = F.interpolate(region[:, None].float(), size=(g, g), mode="nearest").flatten(1)  # (B, N)
        sim = out["visu_sim"].float()
        return {
            "l1": l1,
            "giou": giou,
            "box_focal": 20 * sigmoid_focal(sim, patch_box),
            "box_dice": 2 * dice(sim, patch_box),
        }

    def mim_losses(self, out: dict, pixels, box, patch_mask, rows) -> dict:
        zero = out["box"].sum() * 0
        if not rows.any():
            return {"mim": zero, "mim_vts": zero}
        pred = self.model.mim_head(F.normalize(out["visu_dot"], dim=-1))  # (B, N, 3 p p)
        target = self.model.patches(pixels)
        mim = F.mse_loss(pred[patch_mask].float(), target[patch_mask]) if patch_mask.any() else zero
        vts = self.model.mim_vts_head(out["visu_dot"]).float()  # (B, N, 4)
        vts_loss = F.l1_loss(vts[rows], visual_scores(box, self.model.grid)[rows], reduction="none").sum(-1).mean()
        return {"mim": mim, "mim_vts": vts_loss}

    def mlm_losses(self, out: dict, prompt, words, rows) -> dict:
        zero = out["box"].sum() * 0
        if not words.any():
            return {"mlm": zero, "mlm_sts": zero}
        mlm = F.cross_entropy(self.model.mlm_head(out["language"][words]).float(), prompt[words])
        real = prompt[rows] != 0
        pred = self.model.mlm_sts_head(out["text_dot"][rows])[..., 0].float().masked_fill(~real, float("-inf"))
        labels = semantic_scores(prompt[rows], self.tokenizer).masked_fill(~real, float("-inf")).softmax(-1)
        log_p = pred.log_softmax(-1).masked_fill(~real, 0.0)
        sts = (labels * (labels.clamp(min=1e-12).log() - log_p)).sum(-1).mean()  # KLDivLoss(batchmean)
        return {"mlm": mlm, "mlm_sts": sts}

    # ----------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Training losses on held-out rows, then grounding from whole inputs: Acc@0.5 and mean box IoU."""
        out = super().evaluate(examples, seed, batch_size, max_batches)
        was = self.training
        self.eval()
        ious = []
        for rows, *_ in eval_batches(examples, seed, batch_size or self.eval_batch_size, max_batches):
            b = Batch.unpack(rows.to(self.device), self.layout)
            ious += box_iou(self.model(b.pixels, b.prompt)["box"], box_of_masks(b.mask)).tolist()
        self.train(was)
        out.update({"Acc@0.5": sum(v >= 0.5 for v in ious) / len(ious), "box_iou": sum(ious) / len(ious),
                    "grounded": len(ious)})  # fmt: skip
        return out

    def sequence_length(self) -> int:
        return self.model.grid**2 + 1 + self.layout.prompt + 1

    def measure(self, rows: torch.Tensor, keys: torch.Tensor) -> int:
        """Positions each weight multiplies per example in a training forward; returns the sequence length."""

        def run():
            self.forward(rows, keys)

        self.positions = multiply_positions(self.model, run, len(rows))
        return self.sequence_length()

    def flop_groups(self):
        return position_groups(self.model, self.positions, self.sequence_length())


def box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, S, S) bool: pixels whose centre lies in the box (cx, cy, w, h in [0, 1])."""
    c = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size
    x0, y0 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2
    x1, y1 = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    inx = (c[None] >= x0[:, None]) & (c[None] < x1[:, None])  # (B, S)
    iny = (c[None] >= y0[:, None]) & (c[None] < y1[:, None])
    return iny[:, :, None] & inx[:, None, :]
