"""ReMDM: remasking discrete diffusion (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
Scaling", Eq. 7 and Sec. 4.1; reference: kuleshov-group/remdm ``diffusion.py`` ``_ddpm_caching_update``).

MDLM never changes a revealed token; ReMDM masks one again w.p. sigma_t and reveals masked ones more often, keeping
the masked share m_t = 1 - alpha_t of the forward process. From t to s < t, per position:

    revealed: masked again w.p. sigma_t;   masked: x ~ p_theta w.p. (m_t - m_s + sigma_t (1 - m_t)) / m_t, else stays

for 0 <= sigma_t <= sigma_max = min(1, m_s / (1 - m_t)). ``schedule``: ``cap``, sigma_t = min(eta, sigma_max);
``rescale``, eta * sigma_max (m_t = t for both); ``loop``, alpha rises linearly to ``alpha_on`` over (t_on, 1], stays
over (t_off, t_on] with sigma_t = eta, rises to 1 over [0, t_off], sigma_t = 0 (MDLM) outside the loop. Time runs
t = 1 - i/T down to s = 0, where every mask left is revealed. With eta = 0 a step is MDLM's with the same keyed
uniforms as :mod:`.ancestral` (stream 0, or 1 when greedy): the same ids. Remask draws use stream 2. Only tokens of
the current block this call generated are masked again (:meth:`Decoder.committed`). ``steps``: time steps per
block, not clamped; logits are reused when nothing changed, as in :mod:`.ancestral`.
"""

from __future__ import annotations

import torch

from masklab.sample.samplers._decode import Decoder

__all__ = ["remdm", "SCHEDULES"]

SCHEDULES = ("cap", "rescale", "loop")


def _schedule(t, schedule: str, eta: float, t_on: float, t_off: float, alpha_on: float):
    """(m_t, m_s, sigma_t), each [B] float64, for the steps from t [B] to t - 1/T (m = 1 - alpha)."""

    def share(u):  # m(u): u itself, or the loop's three linear pieces
        if schedule != "loop":
            return u
        rise, fall = 1 - (1 - u) * alpha_on / (1 - t_on), u * (1 - alpha_on) / max(t_off, 1e-300)
        return torch.where(u > t_on, rise, torch.where(u > t_off, torch.full_like(u, 1 - alpha_on), fall))

    m_t, m_s = share(t[0]), share(t[1])
    room = torch.where(m_t < 1, m_s / (1 - m_t).clamp(min=1e-300), 1.0).clamp(max=1.0)  # sigma_max
    if schedule == "loop":
        return m_t, m_s, torch.where((t[0] > t_off) & (t[0] <= t_on), eta, 0.0).to(room.dtype)
    return m_t, m_s, torch.minimum(torch.full_like(room, eta), room) if schedule == "cap" else eta * room


def remdm(model_fn, x, *, mask_id, steps, schedule="cap", eta=0.02, t_on=0.55, t_off=0.05, alpha_on=0.9, **common):
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= eta <= (1.0 if schedule != "loop" else (1 - alpha_on) / alpha_on):  # else a probability is < 0
        raise ValueError(f"eta must be in [0, {'1' if schedule != 'loop' else '(1 - alpha_on) / alpha_on'}], got {eta}")
    if schedule == "loop" and not (0.0 <= t_off < t_on < 1.0 and 0.0 < alpha_on < 1.0):
        raise ValueError(f"loop needs 0 <= t_off < t_on < 1 and 0 < alpha_on < 1, got {t_off}, {t_on}, {alpha_on}")
    d = Decoder(model_fn, x, mask_id=mask_id, steps=steps, clamp=False, **common)
    for _, _, n_steps in d.blocks():
        logits, stale, T = None, True, n_steps.double()  # stale: x changed since the logits; T (B,) time steps
        for s in range(int(n_steps.max())):
            on = (s < n_steps)[:, None]
            masked, held = d.active() & on, d.committed() & on  # (B, L) each
            t = (1.0 - s / T, (1.0 - (s + 1) / T).clamp(min=0.0))  # (B,) float64 each: t and the next time
            m_t, m_s, sigma = _schedule(t, schedule, eta, t_on, t_off, alpha_on)
            again = held & (d.uniforms(s, 2) < sigma[:, None])  # revealed tokens masked again
            if masked.any():
                if stale:
                    logits, stale = d.logits(), False  # (B, L, V) at x_t, before this step's changes
                rows, cols = masked.nonzero(as_tuple=True)
                reveal = ((m_t - m_s) + sigma * (1 - m_t)) / m_t  # (B,) probability that a mask becomes a token
                sel = logits[rows, cols]  # (N, V)
                tok = d.reveal(sel, rows, cols, reveal[rows], s)  # (N,): V = stays masked, w.p. 1 - reveal
                keep = tok < sel.shape[-1]
                d.commit(rows[keep], cols[keep], tok[keep], s)
                stale = bool(keep.any())
            d.remask(again)
            stale = stale or bool(again.any())
    return d.x
