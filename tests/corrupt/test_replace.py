"""Replaced-token detection (ELECTRA Sec. 2; DeBERTaV3): positions without replacement, samples from the
generator softmax with temperature, disallow-correct, and 'sampled == original counts as original'."""

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.replace import electra_mask, rtd_labels, sample_replacements

SPECIAL, MASK, V = [0, 1, 2, 3], 3, 8


def test_positions_exact_k_without_replacement():
    B, L = 32, 40
    ids = torch.randint(4, 100, (B, L))
    ids[:4, 30:] = 0
    c = electra_mask(
        ids,
        keyed.example_keys(0, 0, range(B)),
        mask_id=MASK,
        vocab_size=100,
        special_ids=SPECIAL,
        prob=0.15,
        max_predictions=5,
    )
    n = (ids != 0).sum(1)
    want = torch.clamp(torch.clamp(torch.floor(n * 0.15 + 0.5), min=1), max=5).long()
    assert torch.equal(c.mask.sum(1), want)
    frac_mask = (c.inputs[c.mask] == MASK).float().mean()
    assert 0.7 < float(frac_mask) < 0.97  # ELECTRA: 85% mask token, 15% kept


def law(method, temperature=1.0, disallow=False, n=20000):
    logits = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 0.5, -1.0])  # specials 0..3 are banned
    B = n // 10
    lg = logits.expand(B, 10, V)
    original = torch.full((B, 10), 4)
    sel = torch.ones(B, 10, dtype=torch.bool)
    out = sample_replacements(
        lg,
        original,
        sel,
        keyed.example_keys(0, 0, range(B)),
        method=method,
        temperature=temperature,
        disallow_correct=disallow,
        banned=SPECIAL,
    )
    freq = torch.bincount(out.flatten(), minlength=V).double() / out.numel()
    x = logits.double() / temperature
    x[:4] = -torch.inf
    if disallow:
        x[4] = -torch.inf
    return freq, torch.softmax(x, 0), out, original


CASES = [
    ("multinomial", 1.0, False),
    ("multinomial", 0.5, False),
    ("multinomial", 1.0, True),
    ("gumbel", 0.5, False),
    ("gumbel", 1.0, True),
]


@pytest.mark.parametrize("method,temperature,disallow", CASES)
def test_samples_follow_tempered_softmax(method, temperature, disallow):
    freq, p, out, original = law(method, temperature, disallow)
    assert (freq - p).abs().max() < 0.012, (freq, p)  # 20k draws: 4 sigma ~ 0.014 at p = 0.5
    assert not torch.isin(out, torch.tensor(SPECIAL)).any()
    if disallow:
        assert not (out == original).any()


def test_labels_sampled_equal_original_is_original():
    original = torch.tensor([[5, 6, 7, 0]])
    disc = torch.tensor([[5, 9, 7, 0]])  # position 0 was sampled but equals the original
    y = rtd_labels(disc, original, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    assert y.tolist() == [[0.0, 1.0, 0.0, -100.0]]


def test_keyed_samples_do_not_depend_on_batch():
    lg = torch.randn(6, 12, 30)
    ids = torch.randint(4, 30, (6, 12))
    sel = torch.rand(6, 12) < 0.4
    k = keyed.example_keys(0, 0, range(6))
    a = sample_replacements(lg, ids, sel, k)
    b = sample_replacements(lg[[4, 1]], ids[[4, 1]], sel[[4, 1]], k[[4, 1]])
    assert torch.equal(a[[4, 1]], b) and torch.equal(a[~sel], ids[~sel])
    g = sample_replacements(lg, ids, sel, generator=torch.Generator().manual_seed(0), method="multinomial")
    assert torch.equal(g[~sel], ids[~sel])
    with pytest.raises(ValueError, match="method"):
        sample_replacements(lg, ids, sel, k, method="argmax")
    with pytest.raises(ValueError, match="temperature"):
        sample_replacements(lg, ids, sel, k, temperature=0)


@pytest.mark.parametrize("method", ["gumbel", "multinomial"])
def test_ids_beyond_the_logits_are_ignored_by_banned_and_disallow_correct(method):
    """A banned id or an original id outside [0, V) names no logit: it can never be sampled, so it bans
    nothing (ids past V used to raise IndexError, negative ids banned an id counted from the end); the
    in-vocabulary bans still hold."""
    B, L = 64, 6
    logits = torch.zeros(B, L, V)
    original = torch.full((B, L), V + 2)  # e.g. an added token the generator head does not cover
    original[:, 0] = 5
    original[:, 1] = -100  # e.g. a label tensor: no logit, and not logit V - 100
    sel = torch.ones(B, L, dtype=torch.bool)
    keys = keyed.example_keys(3, 0, range(B))
    out = sample_replacements(
        logits, original, sel, keys, method=method, disallow_correct=True, banned=[*SPECIAL, V, V + 7, -1]
    )
    assert ((out >= 4) & (out < V)).all()
    assert not (out[:, 0] == 5).any()
    assert (out == V - 1).any()  # -1 bans nothing: it does not mean the last id
