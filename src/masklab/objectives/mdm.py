"""Masked diffusion language modelling (MDLM, Sahoo et al. 2024, Eq. 10; LLaDA, Nie et al. 2025, Eq. 3), and
its supervised fine-tuning on prompt/response pairs (LLaDA, Eq. 5).

Loss: -E_t [ (1/t) * sum over masked positions of log p(x_i | x_t) ] / L, with t ~ U(eps, 1) per sequence.
Averaged over all tokens (not only masked ones), this is an upper bound on the negative log-likelihood per token,
which :meth:`MDM.evaluate` reports in bits per token on held-out data. :class:`MDMSFT` noises only the response
and divides each example's sum by its response length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt import sample_t
from masklab.corrupt.diffusion import mdm_noise
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MDM", "MDMSFT"]


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


class MDMSFT(MDM):
    """LLaDA's SFT loss (Nie et al. 2025, Eq. 5; their guidelines' ``ce_loss / answer_lengths``). Examples are
    ``[B, 1 + L]`` rows of :func:`masklab.data.sft.sft_examples`: column 0 the prompt length, then the ids.

    The prompt is never noised. Every response token, EOS padding included, is masked with the row's ``t``; the
    loss of a row is ``sum over masked response tokens of CE / t`` divided by the row's response length, averaged
    over rows: an upper bound on the response NLL per token."""

    name = "mdm-sft"

    def forward(self, batch, keys, position=None, batch_size=None, batch_key=None, **_):
        prompt_len, ids = batch[:, 0], batch[:, 1:]
        response = torch.arange(ids.shape[1], device=ids.device)[None] >= prompt_len[:, None]  # (B, L)
        t = sample_t(
            keys, eps=self.eps, mode=self.t_sampling, position=position, batch_size=batch_size, batch_key=batch_key
        )
        # EOS is a response token here even where it also serves as the pad id: the model learns where to stop
        never = tuple(i for i in self.info.never_mask if i != self.info.eos_id)
        c = mdm_noise(ids, keys, t, mask_id=self.info.mask_id, special_ids=never, can=response)
        logits = logits_of(self.model(input_ids=c.inputs))
        ce = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), reduction="none").view_as(ids)
        per_row = (ce * c.weights).sum(1) / response.sum(1).clamp(min=1)
        n_masked = c.mask.sum().clamp(min=1)
        metrics = {"masked_ce": ce.sum().detach() / n_masked, "mask_frac": c.mask.float().mean().detach()}
        return per_row.mean(), metrics
