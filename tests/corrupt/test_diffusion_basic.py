"""MDM noising: P(masked) = t, weights 1/t, and the bound equals log V for a uniform predictor."""

import math

import torch

from masklab.corrupt import keyed, mdm_noise, sample_t


def test_mask_rate_matches_t_and_weights_are_inverse_t():
    keys = keyed.example_keys(0, 0, torch.arange(400))
    t = sample_t(keys)
    ids = torch.randint(5, 50, (400, 256))
    c = mdm_noise(ids, keys, t, mask_id=1, special_ids=[0, 1, 2])
    rate = c.mask.float().mean(1)
    assert torch.allclose(rate, t, atol=0.12)
    assert abs((rate - t).mean()) < 0.01
    w = c.weights[c.mask]
    assert torch.allclose(w, (1 / t)[:, None].expand_as(c.mask)[c.mask])
    assert (c.inputs[c.mask] == 1).all() and (c.inputs[~c.mask] == ids[~c.mask]).all()


def test_uniform_predictor_bound_is_log_vocab():
    # E_t E_mask [ (1/t) * sum_masked log V ] / L = log V: the ELBO is tight for a uniform model.
    keys = keyed.example_keys(1, 0, torch.arange(2000))
    t = sample_t(keys, eps=1e-3)
    c = mdm_noise(torch.randint(5, 50, (2000, 64)), keys, t, mask_id=1)
    V = 97
    bound = (c.weights * math.log(V)).sum(1).mean() / 64
    assert abs(bound.item() / math.log(V) - 1) < 0.05


def test_t_sampling_modes_cover_unit_interval():
    keys = keyed.example_keys(0, 0, torch.arange(64))
    pos = torch.arange(64)
    bk = keyed.example_keys(0, 0, [0])[0]
    strat = sample_t(keys, mode="stratified", position=pos, batch_size=64, batch_key=bk, eps=0.0)
    # one t per stratum [i/64, (i+1)/64)
    assert torch.equal(torch.sort((strat * 64).floor().long()).values, pos)
    anti = sample_t(keys, mode="antithetic", position=pos, batch_size=64, batch_key=bk, eps=0.0)
    assert torch.allclose(anti[0::2] + anti[1::2], torch.ones(32), atol=1e-6)
