"""Mask-Predict (Ghazvininejad et al. 2019, "Mask-Predict: Parallel Decoding of Conditional Masked Language Models",
Sec. 3.2; reference: facebookresearch/Mask-Predict ``strategies/mask_predict.py``).

T iterations over the N generated positions of a block. Iteration 0 predicts every masked position and commits them
all; iteration t = 1 .. T-1 masks again the

    n = floor(N (T - t) / T)

committed tokens of lowest probability (the linear decay of Sec. 3.2) and predicts only those; the others keep their
tokens and their probabilities from the iteration that predicted them. So a block costs T model calls whatever N,
and the number of masks falls N, N(T-1)/T, ..., N/T.

The paper decodes greedily (``temperature=0``); with a positive temperature each masked position draws its token as
in the other samplers, and its probability is the drawn token's. ``steps`` is T (spread over the blocks with
``block_length``; default N: one fewer mask per iteration), not clamped. Only tokens of the current block that this
call generated are masked again; a row's EOS and the fill after it are final (:meth:`Decoder.committed`).
"""

from __future__ import annotations

import torch

from masklab.sample.samplers._decode import Decoder
from masklab.sample.samplers.confidence import scores

__all__ = ["mask_predict", "mask_counts"]


def mask_counts(n: torch.Tensor, iterations: torch.Tensor, t: int) -> torch.Tensor:
    """[B] masks at iteration ``t`` for ``n`` [B] generated tokens over ``iterations`` [B]: all of them at 0, then
    floor(n (T - t) / T), and 0 once a row's T iterations are done."""
    if t == 0:
        return n
    return torch.where(t < iterations, torch.div(n * (iterations - t), iterations, rounding_mode="floor"), 0)


def mask_predict(model_fn, x, *, mask_id, steps, **common):
    d = Decoder(model_fn, x, mask_id=mask_id, steps=steps, clamp=False, **common)
    B, L = x.shape
    for _, active, n_steps in d.blocks():
        n = active.sum(1)  # (B,) N: the block's generated positions per row
        prob = torch.zeros(B, L, dtype=torch.float64, device=x.device)  # probability of each committed token
        for t in range(int(n_steps.max())):
            if t:
                held = d.committed()
                low = (
                    prob.masked_fill(~held, float("inf")).argsort(dim=1, stable=True).argsort(dim=1)
                )  # rank, lowest first
                d.remask(held & (low < mask_counts(n, n_steps, t)[:, None]))
            masked = d.active()
            if not masked.any():
                continue
            logits = d.logits()  # (B, L, V)
            rows, cols = masked.nonzero(as_tuple=True)
            sel = logits[rows, cols]  # (N, V)
            tok = d.draw(sel, rows, cols, t)
            prob[rows, cols] = scores("low_confidence", sel, tok, d.options).double()
            d.commit(rows, cols, tok, t)
    return d.x
