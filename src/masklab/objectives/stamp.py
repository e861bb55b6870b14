"""STAMP's training objective (Liu, Feng & Chen, 2025, arXiv:2512.00395): the text-generation loss on the answer
plus a patch-level mask loss on the all-mask pass, in one forward (:mod:`masklab.seg.models.stamp`).

The sequence is ``[image] [prompt] <seg> [<mask> x grid^2]`` under STAMP's mixed attention. The text answer here is
the single token ``<seg>`` (the canvas world asks for nothing else), so the text loss is its cross-entropy at the
last prompt position; the mask loss is the binary cross-entropy plus the dice loss of the mask tokens' foreground
logits against the cell labels (the 16 x 16 nearest-resized target, as Text4Seg's descriptors), LISA's mask loss.
The three are added with weight 1. The paper's exact mask loss and weights could not be checked; dice is added so
that the rare foreground cells (about 2% of the grid on canvases) are not outweighed by the background.

At inference the text answer is generated (one prefill) and, when it is ``<seg>``, the mask is the second and last
forward pass: NFE 2 for any grid, against one pass per generated token for descriptors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.seg.models.common import CanvasObjective, Segmented
from masklab.seg.models.mllmseg import dice_loss
from masklab.seg.models.rows import Batch, Layout
from masklab.seg.models.stamp import StampForSegmentation
from masklab.seg.models.vlm import normalize, prefix

__all__ = ["Stamp"]


class Stamp(CanvasObjective):
    """``<seg>`` cross-entropy + mask-token BCE and dice of a :class:`StampForSegmentation`."""

    name = "stamp"

    def __init__(self, model: StampForSegmentation, tokenizer, layout: Layout):
        super().__init__(model, tokenizer, layout)
        if model.config.mask_grid != layout.grid:
            raise ValueError(f"the model's mask grid {model.config.mask_grid} is not the rows' grid {layout.grid}")

    def sequence_length(self, b: Batch) -> int:
        return self.model.config.image_seq_length + b.prompt.shape[1] + 1 + self.model.cells

    def flop_groups(self):
        """As every canvas objective's, but the LM head reads only the text positions and the mask head only the
        mask tokens."""
        L = max(self.flop_tokens, 1)
        head, cells = self.model.lm_head.weight, self.model.cells
        mask_head = {id(p) for p in self.model.mask_head.parameters()}
        groups = [([p for p in ps if p is not head and id(p) not in mask_head], f) for ps, f in super().flop_groups()]
        return groups + [([head], (L - cells) / L), (list(self.model.mask_head.parameters()), cells / L)]

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.batch(rows)
        ids, keep, pos = prefix(self.model, b.prompt, self.model.mask_ids(len(b.prompt), b.prompt.device))
        out = self.model.all_mask_forward(ids, normalize(b.pixels), keep, pos)
        said = out.text_logits[:, -2]  # (B, V): the last prompt token predicts <seg>
        seg = torch.full_like(b.prompt[:, 0], self.model.config.seg_token_id)
        text_loss = F.cross_entropy(said.float(), seg)
        target = b.cells.flatten(1).float()  # (B, N)
        logits = out.mask_logits.float()
        mask_loss = F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)
        cell_acc = ((out.mask_logits > 0) == (target > 0)).float().mean()
        return text_loss + mask_loss, {"text_loss": text_loss.detach(), "mask_loss": mask_loss.detach(),
                                       "cell_acc": cell_acc.detach()}  # fmt: skip

    @torch.no_grad()
    def segment(self, b: Batch) -> Segmented:
        ids, keep, pos = prefix(self.model, b.prompt)
        logits, said_seg = self.model.predict(normalize(b.pixels), ids, keep, pos)
        g = self.layout.grid
        cells = ((logits > 0) & said_seg[:, None]).view(-1, 1, g, g).double()  # no <seg>, no mask
        size = (self.layout.size, self.layout.size)
        masks = F.interpolate(cells, size=size, mode="nearest")[:, 0] > 0  # the reference's upsampling
        n = torch.full_like(said_seg, 2, dtype=torch.long)
        return Segmented(masks, n, torch.ones_like(n), said_seg.cpu())
