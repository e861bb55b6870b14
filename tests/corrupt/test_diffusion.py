"""Masked-diffusion noising: MDLM/LLaDA forward process and MDiff4STR's six strategies plus token
replacement."""

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import STRATEGIES, mdiff4str_noise, mdm_noise, sample_t

SPECIAL, MASK, V = [0, 1, 2, 3], 3, 100


def noise(strategy, B=400, L=30, **kw):
    ids = torch.randint(4, V, (B, L))
    ids[:, 0] = 1
    ids[: B // 4, -5:] = 0
    return ids, mdiff4str_noise(
        ids,
        keyed.example_keys(0, 0, range(B)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        strategies=(strategy,),
        **kw,
    )


def test_each_strategy_shape():
    for s in STRATEGIES:
        ids, c = noise(s)
        elig = ids >= 4
        m = c.mask
        assert not (m & ~elig).any()
        n = elig.sum(1)
        first = elig.long().argmax(1)
        if s == "full":
            assert torch.equal(m, elig)
        elif s == "cloze":
            assert (m.sum(1) == 1).all()
        elif s in ("left_to_right", "right_to_left", "block"):
            k = m.sum(1)
            assert (k >= 1).all() and (k <= n).all()
            idx = torch.arange(ids.shape[1]).expand_as(m)
            lo = torch.where(m, idx, 10**6).min(1).values
            hi = torch.where(m, idx, -1).max(1).values
            assert torch.equal(hi - lo + 1, k), f"{s}: masked tokens not contiguous"
            if s == "right_to_left":
                assert torch.equal(lo, first)
            if s == "left_to_right":
                last = torch.where(elig, idx, -1).max(1).values
                assert torch.equal(hi, last)
        else:
            frac = m.sum() / elig.sum()
            assert 0.4 < float(frac) < 0.6  # E[t] = 1/2
        assert torch.equal(c.inputs[m], torch.full((int(m.sum()),), MASK))


def test_token_replacement_noise_rate_and_targets():
    ids, c = noise("cloze", B=2000, replace_prob=0.2)
    rep = c.kind == 2
    visible = (ids >= 4) & (c.kind != 1)
    assert abs(float(rep.sum() / visible.sum()) - 0.2) < 0.01
    assert (c.inputs[rep] >= 4).all() and torch.equal(c.targets[rep], ids[rep])


def test_strategy_weights_and_errors():
    ids = torch.randint(4, V, (3000, 10))
    c = mdiff4str_noise(
        ids,
        keyed.example_keys(0, 0, range(3000)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        strategies=("full", "cloze"),
        weights=(0.25, 0.75),
    )
    full = (c.mask.sum(1) == 10).double().mean()
    assert abs(float(full) - 0.25) < 0.03
    with pytest.raises(ValueError, match="strategy"):
        mdiff4str_noise(ids, keyed.example_keys(0, 0, range(3000)), mask_id=MASK, vocab_size=V, strategies=("x",))


def test_mdm_noise_rate_is_t():
    B, L = 64, 2000
    ids = torch.randint(4, V, (B, L))
    k = keyed.example_keys(0, 0, range(B))
    t = sample_t(k)
    c = mdm_noise(ids, k, t, mask_id=MASK, special_ids=SPECIAL)
    assert (c.mask.float().mean(1) - t).abs().max() < 0.05
    assert torch.allclose(c.weights[c.mask], (1 / t)[:, None].expand(B, L)[c.mask])


def test_mdm_noise_rejects_nan_and_out_of_range_t():
    """Issue 21.8: t=nan gave NaN weights everywhere; a time outside (0, 1] is a ValueError naming t."""
    ids = torch.arange(5, 25).reshape(2, 10)
    keys = torch.tensor([1, 2])
    for bad in (float("nan"), 0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="t must"):
            mdm_noise(ids, keys, torch.tensor([0.5, bad]), mask_id=1)


def test_mdm_noise_takes_can_like_the_other_corruptions():
    ids = torch.arange(5, 25).reshape(2, 10)
    keys = torch.tensor([1, 2])
    can = torch.zeros_like(ids, dtype=torch.bool)
    can[:, :4] = True
    c = mdm_noise(ids, keys, torch.tensor([1.0, 1.0]), mask_id=1, can=can)
    assert torch.equal(c.mask, can)
