"""ReMDM (Wang et al. 2025) on the exact HMM denoiser: what the paper's posterior (Eq. 7) promises.

- sigma = 0 is MDLM: with eta = 0 the ids, reveal order and model calls equal the ancestral sampler's, same keys.
- The forward marginals are kept: whatever sigma, a position is masked at time t with probability m(t) = 1 - alpha_t,
  so the masked share the model sees at each step follows the schedule (t for cap and rescale; loop: rises, stays at
  1 - alpha_on, falls).
- Only tokens this call revealed in the current block are masked again; never the prompt nor an earlier block.
"""

import pytest
import torch

from masklab.data.synthetic import RandomHMM
from masklab.sample import generate

pytestmark = pytest.mark.usefixtures("one_thread")

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK = HMM.mask_id


class Recorder:
    """The HMM denoiser, keeping every input it was given: all rows, also those left without a mask
    (``every_row``), so that the inputs show the whole batch."""

    every_row = True

    def __init__(self):
        self.seen = []

    def __call__(self, x):
        self.seen.append(x.clone())
        return HMM(x)


def _prompted(rows=6, length=14, prompt=3):
    x = torch.full((rows, length), MASK)
    x[:, :prompt] = torch.arange(prompt) % 12
    return x


@pytest.mark.parametrize("schedule", ["cap", "rescale"])
@pytest.mark.parametrize(
    "options", [{}, {"temperature": 0.0}, {"block_length": 4}, {"eos_id": 3, "fill_id": 0}, {"top_k": 3}]
)
def test_eta_zero_is_the_ancestral_sampler(schedule, options):
    x = _prompted()
    for steps in (1, 40):
        kw = dict(mask_id=MASK, steps=steps, seed=list(range(6)), return_order=True, **options)
        ours = generate(HMM, x, sampler="remdm", schedule=schedule, eta=0.0, **kw)
        mdlm = generate(HMM, x, sampler="ancestral", **kw)
        assert torch.equal(ours.ids, mdlm.ids) and torch.equal(ours.order, mdlm.order) and ours.nfe == mdlm.nfe


def _masked_share_per_step(schedule, eta, steps, **kw):
    model = Recorder()
    x = torch.full((2000, 8), MASK)
    generate(model, x, mask_id=MASK, sampler="remdm", steps=steps, schedule=schedule, eta=eta, seed=5, **kw)
    assert len(model.seen) == steps  # thousands of rows: something changes at every step, so every step calls
    return torch.stack([(s == MASK).double().mean() for s in model.seen])  # (steps,)


@pytest.mark.parametrize("schedule,eta", [("cap", 0.3), ("rescale", 0.6), ("loop", 0.1)])
def test_the_masked_share_follows_the_schedule_whatever_sigma(schedule, eta):
    """Eq. 7 keeps q(z_t | x) = alpha_t x + (1 - alpha_t) m: at step i (t = 1 - i/T) each of the 16000 positions is
    masked independently with probability m(t), so the share is within 5 binomial standard errors of it."""
    T = 20
    share = _masked_share_per_step(schedule, eta, T)
    t = 1 - torch.arange(T, dtype=torch.float64) / T
    if schedule == "loop":  # t_on 0.55, t_off 0.05, alpha_on 0.9
        m = torch.where(t > 0.55, 1 - (1 - t) * 0.9 / 0.45, torch.where(t > 0.05, 0.1, t * 0.1 / 0.05))
    else:
        m = t
    se = (m * (1 - m) / 16000).sqrt()
    assert ((share - m).abs() <= 5 * se + 1e-12).all(), (share, m)


def test_remasking_happens_and_only_at_tokens_this_call_revealed_in_the_current_block():
    model = Recorder()
    x = _prompted(rows=8, length=15)
    out = generate(model, x, mask_id=MASK, sampler="remdm", steps=24, eta=0.2, block_length=4, seed=list(range(8)))
    generated = x == MASK
    block = torch.where(generated, (generated.long().cumsum(1) - 1) // 4, -1)  # (B, L): rank among masks // 4
    again = 0
    for before, after in zip(model.seen[:-1], model.seen[1:], strict=True):
        remasked = (before != MASK) & (after == MASK)
        assert not (remasked & ~generated).any()  # never the prompt
        # blocks run in order and a finished one stays: past a row's first block with a mask, all is still masked
        first = torch.where(after == MASK, block, 10**6).min(1, keepdim=True).values  # (B, 1)
        assert ((after == MASK) | ~generated | (block <= first)).all()
        again += int(remasked.sum())
    assert again > 0 and not (out == MASK).any() and torch.equal(out[:, :3], x[:, :3])


@pytest.mark.parametrize(
    "options,message",
    [
        ({"schedule": "best"}, "schedule must be one of"),
        ({"eta": 1.5}, r"eta must be in \[0, 1\], got 1.5"),
        ({"schedule": "loop", "t_on": 0.1, "t_off": 0.2}, "loop needs 0 <= t_off < t_on < 1"),
        ({"schedule": "loop", "eta": 0.5}, r"eta must be in \[0, \(1 - alpha_on\) / alpha_on\], got 0.5"),
    ],
)
def test_bad_schedules_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        generate(HMM, torch.full((1, 4), MASK), mask_id=MASK, sampler="remdm", steps=4, **options)
