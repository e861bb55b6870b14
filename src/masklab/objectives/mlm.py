"""Masked language modelling (BERT, Devlin et al. 2019, Sec. 3.1): 15% of tokens, 80/10/10 mask/random/keep.

Loss: mean cross-entropy over the selected positions.
"""

from __future__ import annotations

import math

import torch.nn.functional as F

from masklab.corrupt import IGNORE_INDEX, random_mask
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MLM"]


class MLM(Objective):
    name = "mlm"

    def __init__(self, model, info: TokenInfo, prob: float = 0.15, mix=(0.8, 0.1, 0.1)):
        super().__init__(model)
        self.info, self.prob, self.mix = info, prob, tuple(mix)

    def forward(self, batch, keys, **_):
        c = random_mask(batch, keys, mask_id=self.info.mask_id, vocab_size=self.info.vocab_size,
                        special_ids=self.info.special_ids, prob=self.prob, mix=self.mix)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        acc = hit.sum() / c.mask.sum().clamp(min=1)
        return loss, {"masked_acc": acc.detach(), "bits": loss.detach() / math.log(2)}
