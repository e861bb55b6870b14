"""Next-token prediction for a causal LM: the reference model for generative perplexity and the MEAP baseline."""

from __future__ import annotations

import math

import torch.nn.functional as F

from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["AR"]


class AR(Objective):
    name = "ar"

    def __init__(self, model, info: TokenInfo):
        super().__init__(model)
        self.info = info

    def forward(self, batch, keys, **_):
        logits = logits_of(self.model(input_ids=batch))  # (B, L, V)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        return loss, {"bits": loss.detach() / math.log(2)}
