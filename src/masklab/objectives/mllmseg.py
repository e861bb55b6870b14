"""MLLMSeg's training objective (Wang et al., 2025, arXiv:2508.04107; reference ``MLLMSeg.forward``): the LM loss
on the answer ``[SEG] <eos>`` plus the sigmoid focal and dice losses of the light decoder's pixel mask, each with
weight 1 (``train_mllmseg_internvl.sh``: ``--ce_loss_weight 1.0 --focal_loss_weight 1.0 --dice_loss_weight 1.0``).

At inference one forward pass over the image and the prompt gives both the answer's first token (``[SEG]``, or
anything else: then no mask, as for the reference's ``[REJ]``) and, from the same hidden states, the mask: NFE 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.seg.models.common import CanvasObjective, Segmented
from masklab.seg.models.mllmseg import MLLMSegForSegmentation, dice_loss, sigmoid_focal_loss
from masklab.seg.models.rows import Batch, Layout
from masklab.seg.models.vlm import normalize, prefix

__all__ = ["MLLMSeg"]


class MLLMSeg(CanvasObjective):
    """LM loss + focal + dice of a :class:`MLLMSegForSegmentation`."""

    name = "mllmseg"

    def __init__(self, model: MLLMSegForSegmentation, tokenizer, layout: Layout, weights=(1.0, 1.0, 1.0)):
        super().__init__(model, tokenizer, layout)
        if len(weights) != 3 or min(weights) < 0:
            raise ValueError(f"weights must be three non-negative numbers (ce, focal, dice), got {weights}")
        self.weights = tuple(float(w) for w in weights)

    def sequence_length(self, b: Batch) -> int:
        return self.model.config.image_seq_length + b.prompt.shape[1] + b.answer.shape[1] - 1

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.batch(rows).trimmed()
        ids, keep, pos = prefix(self.model, b.prompt, b.answer[:, :-1])
        at = self.model.config.image_seq_length + b.prompt.shape[1] - 1  # the last prompt token predicts [SEG]
        logits, mask_logits = self.model.segment_forward(ids, normalize(b.pixels), keep, pos, seg_at=at)
        ce = F.cross_entropy(logits[:, at:].flatten(0, 1).float(), b.answer.flatten(), ignore_index=0)
        target = b.mask[:, None].float()  # (B, 1, S, S)
        mask_logits = mask_logits.float()
        focal, dice = sigmoid_focal_loss(mask_logits, target), dice_loss(mask_logits, target)
        w = self.weights
        pred = mask_logits > 0
        iou = (pred & (target > 0)).flatten(1).sum(1) / (pred | (target > 0)).flatten(1).sum(1).clamp(min=1)
        metrics = {"ce": ce.detach(), "focal": focal.detach(), "dice": dice.detach(), "train_iou": iou.mean()}
        return w[0] * ce + w[1] * focal + w[2] * dice, metrics

    @torch.no_grad()
    def segment(self, b: Batch) -> Segmented:
        ids, keep, pos = prefix(self.model, b.prompt)
        logits, mask_logits = self.model.segment_forward(ids, normalize(b.pixels), keep, pos, seg_at=ids.shape[1] - 1)
        said_seg = logits[:, -1].argmax(-1) == self.model.config.seg_token_id
        masks = (mask_logits[:, 0] > 0) & said_seg[:, None, None]
        n = torch.ones_like(said_seg, dtype=torch.long)
        return Segmented(masks, n, n, said_seg.cpu())

    def decoder_positions(self) -> list[tuple[torch.nn.Parameter, float]]:
        """(parameter, positions it multiplies per example) for every decoder parameter: the LLM-side projections
        run on the image tokens (or the one segmentation token), DySample's offset conv on the image-token grid,
        the fusion layers on the ViT grid (a cross-attention's key/value rows on its memory), the last conv on
        the pixels."""
        d = self.model.res_decoder
        g2, m, pixels = d.grid**2, self.model.config.image_seq_length, (d.grid * d.patch) ** 2
        out = []
        for module, n in ((d.img_llm_down, m), (d.text_down, 1), (d.upsample, m), (d.text_out_adapter, g2),
                          (d.conv1, g2), (d.conv2, pixels)):  # fmt: skip
            out += [(p, n) for p in module.parameters()]
        for layer, memory in ((d.ca_layer_v2l, m), (d.ca_layer_vl, 1)):
            for name, p in layer.named_parameters():  # in_proj rows: query on the grid, key and value on memory
                out.append((p, (g2 + 2 * memory) / 3 if name.startswith("multihead_attn.in_proj") else g2))
        return out

    def flop_groups(self):
        """The backbone as for every canvas objective, and each decoder parameter at its positions
        (:meth:`decoder_positions`)."""
        L = max(self.flop_tokens, 1)
        dec = {id(p) for p in self.model.res_decoder.parameters()}
        groups = [([p for p in ps if id(p) not in dec], f) for ps, f in super().flop_groups()]
        return groups + [([p], n / L) for p, n in self.decoder_positions()]
