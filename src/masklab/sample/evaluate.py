"""Honest evaluation of masked-diffusion samples: quality, diversity and cost side by side.

Generative perplexity alone is gamed by low-entropy samples (a sampler that repeats one likely token scores a
low gen-PPL), so every figure here comes with the unigram entropy of the same samples (Zheng et al. 2024, Sec.
5 report both for the same reason). Functions:

- :func:`gen_ppl`: perplexity of samples under a reference causal LM (recipe ``ar``, trained on the same
corpus);
- :func:`unigram_entropy`: entropy in bits of the samples' token histogram;
- :func:`nll_bound`: the MDM NLL upper bound on held-out data (MDLM Eq. 10, via
:class:`masklab.objectives.MDM`);
- :func:`timed_generate`: ``generate`` with NFE, wall time and tokens/s;
- :func:`true_nll`: on the synthetic HMM corpus (:class:`masklab.data.synthetic.RandomHMM`), the exact NLL per
  token of the samples, the ground truth gen-PPL approximates.
"""

from __future__ import annotations

import math
import time

import torch

from masklab.objectives.base import logits_of
from masklab.sample.generate import generate

__all__ = ["gen_ppl", "unigram_entropy", "nll_bound", "timed_generate", "true_nll"]


@torch.no_grad()
def gen_ppl(ar_model, ids: torch.Tensor, *, ignore_ids=(), batch_size: int = 32) -> float:
    """exp(mean NLL per predicted token) of ``ids`` [B, L] under a causal LM; ``ignore_ids`` (pad, fill after
    EOS) are neither predicted nor counted. The first token of each row is conditioned on, not scored."""
    total, count = 0.0, 0
    for start in range(0, ids.shape[0], batch_size):
        x = ids[start : start + batch_size]
        logits = logits_of(ar_model(input_ids=x) if hasattr(ar_model, "config") else ar_model(x)).float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none"
        ).view(x.shape[0], -1)
        keep = torch.ones_like(x[:, 1:], dtype=torch.bool)
        for i in ignore_ids:
            keep &= x[:, 1:] != i
        total += float(nll[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no tokens left to score after ignoring ignore_ids")
    return math.exp(total / count)


def unigram_entropy(ids: torch.Tensor, *, ignore_ids=(), vocab_size: int | None = None) -> float:
    """Entropy in bits of the pooled token histogram of ``ids`` (any shape)."""
    flat = ids.flatten()
    for i in ignore_ids:
        flat = flat[flat != i]
    if flat.numel() == 0:
        raise ValueError("no tokens to count")
    p = torch.bincount(flat, minlength=vocab_size or 0).double()
    p = p[p > 0] / flat.numel()
    return float(-(p * p.log2()).sum())


def nll_bound(model, tokenizer, examples: torch.Tensor, *, seed: int = 0, max_batches: int | None = None) -> float:
    """The MDM NLL upper bound in bits/token on held-out ``examples`` [N, L] (reuses the training
    objective)."""
    from masklab.data.tokenizers import token_info
    from masklab.objectives.mdm import MDM

    return MDM(model, token_info(tokenizer)).evaluate(examples, seed=seed, max_batches=max_batches)["nll_bound_bits"]


def timed_generate(model, input_ids: torch.Tensor, **kw) -> dict:
    """Run :func:`generate` once; returns ids, nfe, seconds and generated tokens per second."""
    mask_id = kw["mask_id"]
    n = int((input_ids == mask_id).sum())
    began = time.perf_counter()
    g = generate(model, input_ids, return_order=True, **kw)
    sec = time.perf_counter() - began
    return {"ids": g.ids, "nfe": g.nfe, "seconds": sec, "tokens_per_s": n / sec, "order": g.order}


def true_nll(hmm, ids: torch.Tensor) -> float:
    """Exact NLL in bits per token of ``ids`` [B, L] under the HMM that generated the corpus."""
    return float(-hmm.log_prob(ids).mean()) / ids.shape[1] / math.log(2)
