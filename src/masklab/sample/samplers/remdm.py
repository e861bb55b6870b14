"""ReMDM: remasking discrete diffusion (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
Scaling", Sec. 3 Eq. 7 (the posterior), Sec. 4.1 (sigma schedules); reference: kuleshov-group/remdm ``diffusion.py``
``_ddpm_caching_update``).

MDLM never changes a revealed token. ReMDM's reverse step lets it go back to the mask with probability sigma_t and
reveals masked tokens more often, so that the masked share stays the forward process's 1 - alpha_t. With m = 1 - alpha
the masked share at t (m_t) and at the next time s < t (m_s), per position:

    revealed token:  masked again w.p. sigma_t, else kept
    masked token:    x ~ p_theta w.p. (m_t - m_s + sigma_t (1 - m_t)) / m_t,
                     stays masked w.p. (m_s - sigma_t (1 - m_t)) / m_t

valid for 0 <= sigma_t <= sigma_max = min(1, m_s / (1 - m_t)). Schedules (``schedule``, ``eta``), m_t = t unless said:

- ``cap``:     sigma_t = min(eta, sigma_max)                                        (ReMDM-cap)
- ``rescale``: sigma_t = eta * sigma_max                                            (ReMDM-rescale)
- ``loop``:    alpha rises linearly to ``alpha_on`` over (t_on, 1], stays there over (t_off, t_on] where revealed tokens
  are masked again w.p. eta (sigma_t = eta; masked ones revealed w.p. eta alpha_on / (1 - alpha_on)), then rises to
  1 over [0, t_off]; sigma_t = 0 (MDLM) outside the loop                          (ReMDM-loop)

Time runs t = 1 - i/T, i = 0 .. T-1, down to s = 0, where every mask left is revealed. With eta = 0 each step is
MDLM's and draws the same keyed uniforms as :mod:`.ancestral` (stream 0, or 1 when greedy), so the two give identical
ids; the remask draw has its own stream (2). Only tokens of the current block that this call generated are masked
again (:meth:`Decoder.committed`). ``steps`` are time steps (per block), not clamped. Logits are reused when nothing
changed in a step, as in :mod:`.ancestral`.
"""

from __future__ import annotations

import torch

from masklab.sample.categorical import categorical, filter_logits
from masklab.sample.samplers._decode import Decoder

__all__ = ["remdm", "SCHEDULES"]

SCHEDULES = ("cap", "rescale", "loop")


def _masked_share(t: torch.Tensor, schedule: str, t_on: float, t_off: float, alpha_on: float) -> torch.Tensor:
    """m(t) = 1 - alpha_t [N] float64: t itself, or the loop's three linear pieces."""
    if schedule != "loop":
        return t
    rise = 1 - (1 - t) * alpha_on / (1 - t_on)  # (t_on, 1]: alpha from 0 to alpha_on
    fall = t * (1 - alpha_on) / t_off if t_off > 0 else torch.zeros_like(t)  # [0, t_off]: alpha from alpha_on to 1
    return torch.where(t > t_on, rise, torch.where(t > t_off, torch.full_like(t, 1 - alpha_on), fall))


def _sigma(m_t, m_s, t, schedule: str, eta: float, t_on: float, t_off: float) -> torch.Tensor:
    """sigma_t [N] for the step from masked share m_t to m_s; 0 when eta is 0."""
    room = torch.where(m_t < 1, m_s / (1 - m_t).clamp(min=1e-300), 1.0).clamp(max=1.0)  # sigma_max
    if schedule == "cap":
        return torch.minimum(torch.full_like(room, eta), room)
    if schedule == "rescale":
        return eta * room
    return torch.where((t > t_off) & (t <= t_on), eta, 0.0).to(room.dtype)


def remdm(model_fn, x, *, mask_id, steps, schedule="cap", eta=0.02, t_on=0.55, t_off=0.05, alpha_on=0.9, **common):
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if schedule == "loop" and not (0.0 <= t_off < t_on < 1.0 and 0.0 < alpha_on < 1.0):
        raise ValueError(f"loop needs 0 <= t_off < t_on < 1 and 0 < alpha_on < 1, got {t_off}, {t_on}, {alpha_on}")
    if schedule == "loop" and eta > (1 - alpha_on) / alpha_on:  # else the stay-masked probability is negative
        raise ValueError(f"eta must be <= (1 - alpha_on) / alpha_on = {(1 - alpha_on) / alpha_on:.4g}, got {eta}")
    d = Decoder(model_fn, x, mask_id=mask_id, steps=steps, clamp=False, **common)
    o, shape = d.options, (schedule, t_on, t_off, alpha_on)
    for _, _, n_steps in d.blocks():
        logits, stale = None, True  # stale: x changed since the logits were computed
        T = n_steps.double()  # (B,) time steps of this block per row
        for s in range(int(n_steps.max())):
            on = (s < n_steps)[:, None]
            masked, held = d.active() & on, d.committed() & on  # (B, L) each
            t, t_next = 1.0 - s / T, (1.0 - (s + 1) / T).clamp(min=0.0)  # (B,) float64
            m_t, m_s = _masked_share(t, *shape), _masked_share(t_next, *shape)
            sigma = _sigma(m_t, m_s, t, schedule, eta, t_on, t_off)  # (B,)
            again = held & (d.uniforms(s, 2) < sigma[:, None])  # revealed tokens masked again
            if masked.any():
                if stale:
                    logits, stale = d.logits(), False  # (B, L, V) at x_t, before this step's changes
                rows, cols = masked.nonzero(as_tuple=True)
                reveal = ((m_t - m_s) + sigma * (1 - m_t)) / m_t  # (B,) probability that a mask becomes a token
                sel = logits[rows, cols]  # (N, V)
                if o.temperature == 0:
                    tok = filter_logits(sel, o.top_k, o.top_p).argmax(-1)
                    tok = torch.where(d.uniforms(s, 1)[rows, cols] < reveal[rows], tok, sel.shape[-1])
                else:
                    p = filter_logits(sel.double() / o.temperature, o.top_k, o.top_p).softmax(-1)  # (N, V) float64
                    stay = (m_s - sigma * (1 - m_t)) / m_t
                    q = torch.cat([p * reveal[rows, None], stay[rows, None]], -1)  # (N, V + 1): last = stay masked
                    tok = categorical(q.log(), u=d.uniforms(s, 0)[rows, cols])
                keep = tok < sel.shape[-1]
                d.commit(rows[keep], cols[keep], tok[keep], s)
                stale = bool(keep.any())
            d.remask(again)
            stale = stale or bool(again.any())
    return d.x
