"""Ancestral sampling of a masked diffusion (MDLM, Sahoo et al. 2024, Sec. 3.2 / Eq. 7; D3PM absorbing state).

Time runs from t = 1 down to 0 in ``steps`` equal steps (linear schedule alpha_t = 1 - t). From t to s < t
each still-masked position independently draws from the (V + 1)-way reverse transition

    q(x_s | x_t) = (t - s)/t * p_theta(x | x_t)  for each token x,   s/t  for staying masked,

in float64 by inverse CDF, as MDLM's ``_ddpm_caching_update`` (which used fp32 Gumbel; see ``categorical``);
:meth:`Decoder.reveal` takes the same draw without forming the (V + 1)-way row at positions that stay masked.
The last step (s = 0) reveals everything left. When no position of any row changed in a step the input is
identical, so the model output of the previous step is reused (MDLM's cache): a step then costs only the draw,
not a model call. ``stats["nfe"]`` counts the model calls. With one token per step in expectation this is not
exact (tokens revealed in the same step are drawn independently); as ``steps`` grows it converges to the
first-hitting sampler (:mod:`.fhs`), which reaches the same distribution with one call per token.

``steps`` is the number of time steps and is NOT clamped to the masked count (steps beyond it cost draws, not
model calls). With ``block_length`` the steps are split evenly over the blocks and each block runs from t = 1
to 0.
"""

from __future__ import annotations

from masklab.sample.samplers._decode import Decoder

__all__ = ["ancestral"]


def ancestral(model_fn, x, *, mask_id, steps, **common):
    d = Decoder(model_fn, x, mask_id=mask_id, steps=steps, clamp=False, **common)
    for _, _, n_steps in d.blocks():
        logits, changed = None, True
        T = n_steps.double()  # (B,) time steps of this block per row
        for s in range(int(n_steps.max())):
            active = d.active() & (s < n_steps)[:, None]
            if not active.any():
                break
            if changed or logits is None:
                logits = d.logits()  # (B, L, V)
            rows, cols = active.nonzero(as_tuple=True)
            t = (1.0 - s / T)[rows]  # (N,) float64
            s_next = (1.0 - (s + 1) / T).clamp(min=0.0)[rows]
            sel = logits[rows, cols]  # (N, V)
            tok = d.reveal(sel, rows, cols, (t - s_next) / t, s)  # (N,): V = stays masked
            keep = tok < sel.shape[-1]  # the last category is "stay masked"
            changed = bool(keep.any())
            d.commit(rows[keep], cols[keep], tok[keep], s)
    return d.x
