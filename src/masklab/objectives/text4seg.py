"""Text4Seg: segmentation as text generation (Lan et al., ICLR 2025, "Text4Seg: Reimagining Image Segmentation as
Text Generation", Sec. 3; reference: github.com/mc-lan/Text4Seg), and Text4Seg++'s next-brick prediction (Lan et
al. 2025, box-wise semantic descriptors).

The multimodal LM is trained with the plain next-token loss on its answer (Sec. 3.3: no extra decoder, no extra
loss): the cross-entropy of every answer token given the image, the referring expression and the answer so far,
averaged over the answer tokens of the batch (what Hugging Face's ``labels=`` loss computes; the test checks it
against that). The answer is one of the formats of :mod:`masklab.seg.models.rows`:

* ``rrle``: the 16 x 16 semantic descriptors with row-wise run-length encoding (Sec. 3.2, the paper's default);
* ``plain``: the same descriptors uncompressed (every cell label, ``|``-joined), the paper's baseline for R-RLE's
  ~3x faster inference;
* ``bricks``: Text4Seg++'s next-brick answer, the box and its cell grid.

At inference the answer is generated greedily with a KV cache (:func:`masklab.seg.models.vlm.greedy_decode`) and
read as the reference evaluation reads it (:func:`masklab.seg.models.rows.read_answer`): leniently, every label but
``others`` being the object, then upsampled with nearest interpolation. The reference's optional SAM refinement is
not used (no SAM here): the masks are the descriptors' own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.seg.models.common import CanvasObjective, Segmented
from masklab.seg.models.rows import Batch, Layout, read_answer
from masklab.seg.models.vlm import greedy_decode, normalize, prefix

__all__ = ["Text4Seg", "TEXT_FORMATS"]

TEXT_FORMATS = ("rrle", "plain", "bricks")


class Text4Seg(CanvasObjective):
    """Next-token loss on the answer of ``fmt`` (``rrle``, ``plain`` or ``bricks``) of an InternVL ``model``."""

    name = "text4seg"

    def __init__(self, model, tokenizer, layout: Layout, fmt: str = "rrle"):
        super().__init__(model, tokenizer, layout)
        if fmt not in TEXT_FORMATS:
            raise ValueError(f"fmt must be one of {TEXT_FORMATS}, got {fmt!r}")
        self.fmt = fmt

    def answer_logits(self, b: Batch) -> torch.Tensor:
        """Teacher-forced logits (B, A, V): position t predicts answer token t."""
        ids, keep, pos = prefix(self.model, b.prompt, b.answer[:, :-1])
        out = self.model(input_ids=ids, pixel_values=normalize(b.pixels), attention_mask=keep, position_ids=pos)
        return out.logits[:, ids.shape[1] - b.answer.shape[1] :]  # from the last prompt token on

    def sequence_length(self, b: Batch) -> int:
        return self.model.config.image_seq_length + b.prompt.shape[1] + b.answer.shape[1] - 1

    def forward(self, rows: torch.Tensor, keys: torch.Tensor, **ctx):
        b = self.batch(rows).trimmed()
        logits = self.answer_logits(b)  # (B, A, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), b.answer.flatten(), ignore_index=0)
        real = b.answer != 0
        acc = ((logits.argmax(-1) == b.answer) & real).sum() / real.sum().clamp(min=1)
        return loss, {"token_acc": acc.detach(), "answer_len": real.sum(1).float().mean()}

    @torch.no_grad()
    def segment(self, b: Batch) -> Segmented:
        eos = self.tokenizer.eos_token_id
        d = greedy_decode(self.model, b.pixels, b.prompt, eos, self.layout.answer)
        masks, valid = [], []
        for ids, n in zip(d.ids.tolist(), d.lengths.tolist(), strict=True):
            text = self.tokenizer.decode([t for t in ids[:n] if t not in (0, eos)])
            m, ok = read_answer(self.fmt, text, self.layout)
            masks.append(torch.from_numpy(m))
            valid.append(ok)
        # alone, an example needs one prefill (which gives its first token) and one forward per later token
        return Segmented(torch.stack(masks).to(b.mask.device), d.lengths, d.lengths, torch.tensor(valid))
