"""Confidence-ordered parallel unmasking (LLaDA, Nie et al. 2025, Alg. 5 "low_confidence" remasking).

At each of ``steps`` steps every masked position draws a token; the row then commits the ``k`` draws the model is
most sure of (probability of the drawn token) and leaves the rest masked. ``k`` spreads the row's masked count
evenly over the steps, as LLaDA's ``get_num_transfer_tokens``. ``remasking="random"`` commits random positions.
"""

from __future__ import annotations

import torch

from masklab.corrupt import keyed
from masklab.sample.categorical import categorical

__all__ = ["confidence", "transfer_counts", "check_logits"]


def transfer_counts(n_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps] tokens to commit per step: n // steps each, the remainder on the first steps."""
    base = torch.div(n_masked, steps, rounding_mode="floor")[:, None]
    extra = (torch.arange(steps, device=n_masked.device)[None] < (n_masked % steps)[:, None]).long()
    return base + extra


def check_logits(logits: torch.Tensor, step: int) -> None:
    if not torch.isfinite(logits).all():
        raise ValueError(f"model returned NaN or inf logits at step {step}")


def confidence(model_fn, x, *, mask_id, steps, keys, temperature=1.0, top_k=None, top_p=None, order=None,
               remasking="low_confidence", **_):
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking must be 'low_confidence' or 'random', got {remasking!r}")
    x = x.clone()
    counts = transfer_counts((x == mask_id).sum(1), steps)  # (B, steps)
    B, L = x.shape
    for s in range(steps):
        masked = x == mask_id
        if not masked.any():
            break
        logits = model_fn(x)  # (B, L, V)
        rows, cols = masked.nonzero(as_tuple=True)
        sel = logits[rows, cols]  # (N, V)
        check_logits(sel, s)
        step_keys = keyed.derive(keys, s)
        u = keyed.uniform64(step_keys, L, stream=0)[rows, cols]
        tok = categorical(sel, temperature=temperature, top_k=top_k, top_p=top_p, u=u)
        if remasking == "low_confidence":
            conf = sel.float().softmax(-1).gather(-1, tok[:, None]).squeeze(-1)
        else:
            conf = keyed.uniform(step_keys, L, stream=1)[rows, cols]
        score = torch.full((B, L), -1.0, device=x.device)
        score[rows, cols] = conf.float()
        rank = score.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        commit = (rank < counts[:, s : s + 1]) & masked
        proposal = x.clone()
        proposal[rows, cols] = tok.to(x.dtype)
        x = torch.where(commit, proposal, x)
        if order is not None:
            order[commit] = s
    return x
