"""Masked diffusion language modelling (MDLM, Sahoo et al. 2024, Eq. 10; LLaDA, Nie et al. 2025, Eq. 3).

Loss: -E_t [ (1/t) * sum over masked positions of log p(x_i | x_t) ] / L, with t ~ U(eps, 1) per sequence.
Averaged over all tokens (not only masked ones), this is an upper bound on the negative log-likelihood per token,
which :meth:`MDM.evaluate` reports in bits per token on held-out data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt import sample_t
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MDM"]


class MDM(Objective):
    name = "mdm"

    def __init__(self, model, info: TokenInfo, eps: float = 1e-3, t_sampling: str = "iid"):
        super().__init__(model)
        self.info, self.eps, self.t_sampling = info, eps, t_sampling

    def forward(self, batch, keys, position=None, batch_size=None, batch_key=None, **_):
        t = sample_t(
            keys, eps=self.eps, mode=self.t_sampling, position=position, batch_size=batch_size, batch_key=batch_key
        )  # (B,)
        c = TOKEN.get("mdm")(batch, keys, self.info, None, t=t)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), reduction="none")  # (B*L,)
        n_tokens = (batch != self.info.pad_id).sum().clamp(min=1)
        loss = (ce * c.weights.flatten()).sum() / n_tokens  # NLL bound, nats per token
        n_masked = c.mask.sum().clamp(min=1)
        metrics = {"masked_ce": ce.sum().detach() / n_masked, "mask_frac": c.mask.float().mean().detach()}
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, examples, seed=0, batch_size=32, max_batches=None):
        """NLL upper bound in bits per token, with t stratified over each held-out batch."""
        saved, self.t_sampling = self.t_sampling, "stratified"
        try:
            out = super().evaluate(examples, seed, batch_size, max_batches)
        finally:
            self.t_sampling = saved
        out["nll_bound_bits"] = out["loss"] / math.log(2)
        return out
