"""First-hitting sampler (FHS; Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked
models and exploit inaccurate categorical sampling", Alg. 1 / Prop. 4.1).

In a masked diffusion with n masked tokens at time t, the n reveal times are i.i.d. uniform on (0, t), so the
next one to be revealed is the first hit t' = t * u^(1/n), u ~ U(0, 1), and which position it is is uniform
over the n masked positions. FHS jumps straight to t': one model call per revealed token, one uniformly chosen
masked position per step, its token drawn from the model's conditional. This is exact in distribution for the
ancestral (MDLM) sampler with infinitely many steps, at the cost of only n model calls. Rows of a batch run in
lockstep, one token each per step; a row with fewer masks finishes early.

The model here is time-agnostic (it sees only x_t), so t only matters as a record: the reveal times are
written to ``stats["times"]`` [B, L] when a ``stats`` dict is given. ``steps`` is ignored: FHS always takes
one step per masked token (per block with ``block_length``).
"""

from __future__ import annotations

import torch

from masklab.sample.samplers._decode import Decoder

__all__ = ["fhs"]


def fhs(model_fn, x, *, mask_id, steps, **common):
    n = (x == mask_id).sum(1)
    d = Decoder(model_fn, x, mask_id=mask_id, steps=n, **common)
    B, L = x.shape
    t = torch.ones(B, dtype=torch.float64, device=x.device)  # (B,) current time of each row
    times = torch.full((B, L), float("nan"), dtype=torch.float64, device=x.device)
    for _, _, _ in d.blocks():
        s = 0
        while True:
            active = d.active()
            left = (d.x == mask_id).sum(1)  # masked tokens still to reveal (all blocks): the n in t * u^(1/n)
            live = active.any(1)
            if not live.any():
                break
            logits = d.logits()  # (B, L, V)
            pick_u = d.uniforms(s, 1).masked_fill(~active, -1.0)
            col = pick_u.argmax(1)  # (B,) one uniformly chosen active masked position per row
            rows = live.nonzero(as_tuple=True)[0]
            cols = col[rows]
            tok = d.draw(logits[rows, cols], rows, cols, s)
            u = d.uniforms(s, 2)[:, 0]
            t = torch.where(live, t * u.pow(1.0 / left.clamp(min=1).double()), t)
            times[rows, cols] = t[rows]
            d.commit(rows, cols, tok, s)
            s += 1
    d.stats["times"] = times
    return d.x
