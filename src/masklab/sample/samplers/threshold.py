"""Confidence-threshold parallel decoding (Fast-dLLM, Wu et al. 2025, Sec. 3.3 "confidence-aware parallel
decoding").

Each step every active masked position draws a token; every position whose drawn token has probability above
``threshold`` is committed, and at least the single most confident one is, so each step makes progress. Where
the model is sure, many tokens land in one model call (fewer NFE); where it is not, it falls back to one token
per step. Fast-dLLM's Theorem 1: if the committed marginals are all above a threshold close to 1, the product
of marginals is close to the joint, so greedy parallel decoding stays near one-token-per-step quality; the
tests and benchmark measure how near.

``steps`` is ignored: the number of steps is decided by the confidences (at most one per masked token). With
``block_length`` it runs block by block, as Fast-dLLM does with LLaDA's semi-autoregressive blocks.
"""

from __future__ import annotations

import torch

from masklab.sample.samplers._decode import Decoder
from masklab.sample.samplers.confidence import scores

__all__ = ["threshold"]


def threshold(model_fn, x, *, mask_id, steps, threshold=0.9, **common):
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    n = (x == mask_id).sum(1)
    d = Decoder(model_fn, x, mask_id=mask_id, steps=n, **common)
    B, L = x.shape
    for _ in d.blocks():
        s = 0
        while True:
            active = d.active()
            if not active.any():
                break
            logits = d.logits()  # (B, L, V)
            rows, cols = active.nonzero(as_tuple=True)
            sel = logits[rows, cols]
            tok = d.draw(sel, rows, cols, s)
            conf = torch.full((B, L), -1.0, dtype=torch.float64, device=x.device)
            conf[rows, cols] = scores("low_confidence", sel, tok, d.options).double()
            best = conf.argmax(1, keepdim=True)  # (B, 1) at least one per row that has an active position
            commit = (conf > threshold) & active
            commit.scatter_(1, best, active.gather(1, best) | commit.gather(1, best))
            d.commit(rows, cols, tok, s, where=commit)
            s += 1
    return d.x
