"""MEAP: Mask-Enhanced Autoregressive Prediction (Zhuang et al. 2025, Sec. 3).

A causal LM reads its input with a random ``prob`` fraction of tokens replaced by the mask token (a fresh
keyed pattern per row) and is trained with the ordinary next-token loss on the CLEAN sequence: targets are
unchanged. No extra parameters and no extra compute. :meth:`MEAP.evaluate` also reports the plain next-token
loss on clean held-out input (``clean_bits``), the number to compare with the ``ar`` recipe.

``sft=True`` is MEAP's fine-tuning recipe (:func:`masklab.corrupt.meap.meap_sft`, after the reference's
``MEAP-SFT/MEAP-SFT.py``): examples are ``[B, 1 + L]`` prompt/response rows (:func:`masklab.data.sft.sft_examples`,
column 0 the prompt length); each is duplicated, the original trains next-token prediction on its response, the
copy has ``prob`` of its response masked (0.1 in the paper) and is trained on those masked tokens only. The loss
is the mean cross-entropy over all supervised tokens of the 2B rows, as Hugging Face's causal-LM loss over a batch
that holds both. Each step therefore runs the model on twice the rows (:meth:`MEAP.flop_groups`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt.meap import meap_sft
from masklab.corrupt.record import IGNORE_INDEX
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MEAP"]


class MEAP(Objective):
    name = "meap"

    def __init__(self, model, info: TokenInfo, prob: float = 0.15, *, sft: bool = False, min_response: int = 50):
        super().__init__(model)
        self.info, self.prob, self.sft, self.min_response = info, prob, sft, min_response

    def flop_groups(self):
        """(parameters, share of an example's tokens they process) for :mod:`masklab.compare.flops`: SFT runs
        the model on each example and its masked copy."""
        from masklab.compare.flops import matmul_params

        return [(matmul_params(self), 2.0 if self.sft else 1.0)]

    def forward(self, batch, keys, **_):
        if self.sft:
            return self._sft(batch, keys)
        c = TOKEN.get("meap")(batch, keys, self.info, None, prob=self.prob)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        target = batch[:, 1:]  # next tokens of the clean sequence
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten())
        return loss, {"bits": loss.detach() / math.log(2), "mask_frac": c.mask.float().mean().detach()}

    def _sft(self, batch, keys):
        """MEAP-SFT on [B, 1 + L] prompt/response rows: originals and masked copies in one forward of 2B rows."""
        prompt_len, ids = batch[:, 0], batch[:, 1:]
        B = ids.shape[0]
        c = meap_sft(ids, keys, prompt_len, mask_id=self.info.mask_id, eos_id=self.info.eos_id, ratio=self.prob,
                     min_response=self.min_response)  # fmt: skip
        logits = logits_of(self.model(input_ids=c.inputs))  # (2B, L, V)
        target = c.targets[:, 1:]  # (2B, L - 1): HF labels, shifted here
        ce = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
        ).view_as(target)
        has = target != IGNORE_INDEX
        loss = ce.sum() / has.sum().clamp(min=1)  # mean over every supervised token of both copies
        response, masked = has[:B], has[B:]
        metrics = {
            "bits": loss.detach() / math.log(2),
            "response_bits": (ce[:B].sum() / response.sum().clamp(min=1)).detach() / math.log(2),
            "masked_bits": (ce[B:].sum() / masked.sum().clamp(min=1)).detach() / math.log(2),
            "mask_frac": (c.mask.sum() / response.sum().clamp(min=1)).detach(),
        }
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, examples, seed=0, batch_size=32, max_batches=None):
        out = super().evaluate(examples, seed, batch_size, max_batches)
        if self.sft:  # the originals are clean already: response_bits is the plain next-token loss
            return out
        saved, self.prob = self.prob, 0.0
        try:
            clean = super().evaluate(examples, seed, batch_size, max_batches)
        finally:
            self.prob = saved
        out["clean_bits"] = clean["bits"]
        return out
