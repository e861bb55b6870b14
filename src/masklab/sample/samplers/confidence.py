"""Confidence-ordered parallel unmasking: LLaDA's remasking rules and Dream's confidence scores.

At each step every active masked position draws a token; the row then commits the ``k`` positions with the
highest score and leaves the rest masked. ``k`` spreads the block's masked count evenly over the block's
steps, as LLaDA's ``get_num_transfer_tokens``. Scores (``remasking``):

- ``low_confidence`` (LLaDA, Nie et al. 2025, Alg. 5) and ``maskgit_plus`` (Dream, Ye et al. 2025; MaskGIT):
  the probability of the drawn token. The two names are the same rule.
- ``topk_margin`` (Dream): top-1 minus top-2 probability.
- ``entropy`` (Dream): minus the entropy of the position's distribution.
- ``random`` (LLaDA): a keyed uniform, i.e. a uniformly random order. With one token per step this is exact:
  it is any-order autoregressive sampling from the model's conditionals.

``alg_temp > 0`` (Dream) picks the ``k`` positions at random with weights softmax(score / alg_temp) instead of
the top ``k`` (Dream's multinomial, as Gumbel-top-k with keyed noise). Probabilities are taken after
temperature and top-k/top-p.
"""

from __future__ import annotations

import torch

from masklab.sample.categorical import filter_logits
from masklab.sample.samplers._decode import DecodeOptions, Decoder, split_evenly

__all__ = ["confidence", "REMASKING", "scores"]

REMASKING = ("low_confidence", "maskgit_plus", "topk_margin", "entropy", "random")


def scores(kind: str, logits: torch.Tensor, tok: torch.Tensor, o: DecodeOptions) -> torch.Tensor:
    """Confidence [N] of each row of ``logits`` [N, V] given its drawn token ``tok`` [N], after the options'
    temperature and top-k/top-p."""
    t = o.temperature
    x = filter_logits(logits.float() / max(t, 1e-6) if t > 0 else logits.float(), o.top_k, o.top_p)
    logp = x.log_softmax(-1)  # (N, V)
    if kind in ("low_confidence", "maskgit_plus"):
        return logp.gather(-1, tok[:, None]).squeeze(-1).exp()
    if kind == "topk_margin":
        top2 = logp.topk(min(2, logp.shape[-1]), dim=-1).values.exp()
        return top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
    if kind == "entropy":
        p = logp.exp()
        return (p * logp.clamp(min=-1e30)).nan_to_num(0.0).sum(-1)  # -H
    raise ValueError(f"unknown confidence {kind!r}")


def confidence(model_fn, x, *, mask_id, steps, remasking="low_confidence", alg_temp=0.0, **common):
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if alg_temp < 0:
        raise ValueError(f"alg_temp must be >= 0, got {alg_temp}")
    d = Decoder(model_fn, x, mask_id=mask_id, steps=steps, **common)
    B, L = x.shape
    for _, active, n_steps in d.blocks():
        counts = split_evenly(active.sum(1), n_steps, int(n_steps.max()))  # (B, steps of this block)
        for s in range(counts.shape[1]):
            active = d.active()
            if not active.any():
                break
            logits = d.logits()  # (B, L, V)
            rows, cols = active.nonzero(as_tuple=True)
            sel = logits[rows, cols]  # (N, V)
            tok = d.draw(sel, rows, cols, s)
            if remasking == "random":
                conf = d.uniforms(s, 1, torch.float32)[rows, cols]
            else:
                conf = scores(remasking, sel, tok, d.options)
                if alg_temp > 0:
                    g = -torch.log(-torch.log(d.uniforms(s, 1)[rows, cols].clamp(min=1e-300)))
                    conf = conf.double() / alg_temp + g  # Gumbel-top-k = multinomial without replacement
            score = torch.full((B, L), float("-inf"), dtype=torch.float64, device=x.device)
            score[rows, cols] = conf.double()
            rank = score.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
            d.commit(rows, cols, tok, s, where=rank < counts[:, s : s + 1])
    return d.x
