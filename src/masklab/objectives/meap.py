"""MEAP: Mask-Enhanced Autoregressive Prediction (Zhuang et al. 2025, Sec. 3).

A causal LM reads its input with a random ``prob`` fraction of tokens replaced by the mask token (a fresh
keyed pattern per row) and is trained with the ordinary next-token loss on the CLEAN sequence: targets are
unchanged. No extra parameters and no extra compute. :meth:`MEAP.evaluate` also reports the plain next-token
loss on clean held-out input (``clean_bits``), the number to compare with the ``ar`` recipe.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MEAP"]


class MEAP(Objective):
    name = "meap"

    def __init__(self, model, info: TokenInfo, prob: float = 0.15):
        super().__init__(model)
        self.info, self.prob = info, prob

    def forward(self, batch, keys, **_):
        c = TOKEN.get("meap")(batch, keys, self.info, None, prob=self.prob)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        target = batch[:, 1:]  # next tokens of the clean sequence
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten())
        return loss, {"bits": loss.detach() / math.log(2), "mask_frac": c.mask.float().mean().detach()}

    @torch.no_grad()
    def evaluate(self, examples, seed=0, batch_size=32, max_batches=None):
        out = super().evaluate(examples, seed, batch_size, max_batches)
        saved, self.prob = self.prob, 0.0
        try:
            clean = super().evaluate(examples, seed, batch_size, max_batches)
        finally:
            self.prob = saved
        out["clean_bits"] = clean["bits"]
        return out
