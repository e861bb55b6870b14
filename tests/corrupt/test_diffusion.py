"""Masked-diffusion noising: the MDLM/LLaDA forward process, and MDiff4STR's six strategies and reflect input
against exact distributions written from OpenOCR's label encoder (``openrec/preprocess/mdiff_label_encode.py``)."""

import math
from collections import Counter
from fractions import Fraction

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import STRATEGIES, mdiff4str_noise, mdm_noise, sample_t

SPECIAL, MASK, V = [0, 1, 2, 3], 3, 100
PAD, EOS, STR_MASK, STR_V = 12, 0, 11, 13  # OpenOCR's dictionary order: [EOS] + characters + [<mask>, <pad>]


def str_rows(n: int, B: int, L: int = 9) -> torch.Tensor:
    """[B, L] label rows of n - 1 characters, the EOS, then padding (n eligible tokens per row)."""
    ids = torch.full((B, L), PAD)
    ids[:, : n - 1] = torch.randint(1, 11, (B, n - 1), generator=torch.Generator().manual_seed(n))
    ids[:, n - 1] = EOS
    return ids


def noise(ids, strategy=None, **kw):
    strategies = STRATEGIES if strategy is None else (strategy,)
    keys = keyed.example_keys(0, 0, range(len(ids)))
    return mdiff4str_noise(ids, keys, mask_id=STR_MASK, vocab_size=STR_V, special_ids=(PAD,), pad_id=PAD,
                           strategies=strategies, **kw)  # fmt: skip


# The reference's distribution over masked sets of a row of n tokens, enumerated from its randint calls.
def _suffix(n, visible):
    return frozenset(range(visible, n))


def pmf_left_to_right(n):
    return {_suffix(n, s): Fraction(1, n - 1) for s in range(1, n)}


def pmf_right_to_left(n):
    return {frozenset(range(s)): Fraction(1, n - 1) for s in range(1, n)}


def pmf_block(n):
    out = Counter()
    for r0 in range(2, 7):  # rand_step = min(randint(2, 6), len(text))
        r = min(r0, n)
        size = n // r
        if size == 1:  # left_to_right or right_to_left with probability 1/2
            for half in (pmf_left_to_right(n), pmf_right_to_left(n)):
                for k, p in half.items():
                    out[k] += Fraction(1, 5) * Fraction(1, 2) * p
            continue
        r += n % r != 0
        ks = [1] if r == 2 else range(2, r + 1)
        for k in ks:
            out[_suffix(n, size * (k - 1))] += Fraction(1, 5) * Fraction(1, len(ks))
    return dict(out)


def pmf_cloze(n):
    return {frozenset([i]): Fraction(1, n) for i in range(n)}


def random_count_pmf(n):
    """P(m masked) under t ~ U[0, 1) and per-token masks: C(n, m) B(m + 1, n - m + 1) = 1 / (n + 1) for every m;
    the empty draw (1 / (n + 1)) becomes one masked token."""
    return {m: Fraction(1, n + 1) * (2 if m == 1 else 1) for m in range(1, n + 1)}


PMF = {"left_to_right": pmf_left_to_right, "right_to_left": pmf_right_to_left, "block": pmf_block, "cloze": pmf_cloze}


def total_variation(counts: Counter, pmf: dict, N: int) -> float:
    keys = set(counts) | set(pmf)
    return 0.5 * sum(abs(counts.get(k, 0) / N - float(pmf.get(k, 0))) for k in keys)


@pytest.mark.parametrize("n", [3, 5, 6, 9])
@pytest.mark.parametrize("strategy", sorted(PMF))
def test_ordered_strategies_follow_the_reference_distribution(strategy, n):
    """Every masked set (as positions) appears as often as OpenOCR's label encoder makes it: total variation
    against the exact distribution below 0.02 over 12000 rows (sampling noise alone is about 0.01 here)."""
    N = 12000
    c = noise(str_rows(n, N), strategy)
    codes, freq = torch.unique((c.mask.long() << torch.arange(c.mask.shape[1])).sum(1), return_counts=True)
    counts = Counter(
        {frozenset(i for i in range(n) if code >> i & 1): int(f) for code, f in zip(codes, freq, strict=True)}
    )
    assert total_variation(counts, PMF[strategy](n), N) < 0.02


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_random_strategy_counts_and_short_rows(n):
    """random: P(m) = 1/(n+1) for m >= 2 and 2/(n+1) for m = 1, never 0 (the reference masks one token of a row
    it left unmasked); rows of n <= 2 tokens take random whatever the strategy."""
    N = 12000
    for strategy in ("random", "left_to_right", "block", "cloze") if n <= 2 else ("random",):
        c = noise(str_rows(n, N), strategy)
        counts = Counter(c.mask.sum(1).tolist())
        assert total_variation(counts, random_count_pmf(n), N) < 0.02, strategy


def test_full_and_the_pad_rule():
    ids = str_rows(5, 50)
    c = noise(ids, "full")
    assert torch.equal(c.mask, ids != PAD)
    assert (c.inputs == STR_MASK).all()  # padding is shown as <mask> too, as in the reference's noisy batch
    assert (c.targets[ids == PAD] == -100).all()


@pytest.mark.parametrize("n", [3, 6])
def test_weights_are_openocr_denoising_weights(n):
    """OpenOCR forward_train: sum(CE / p_mask / (length + 1)) / B with p_mask = masked / n and length = n."""
    c = noise(str_rows(n, 400))
    m = c.mask.sum(1, keepdim=True).float()
    assert torch.allclose(c.p_mask, m[:, 0] / n)
    assert torch.allclose(c.weights, c.mask / (m / n * (n + 1)))
    assert torch.allclose((c.weights * c.mask).sum(1), torch.full((400,), n / (n + 1)))


def test_denoising_input_has_no_replaced_tokens_and_reflect_is_separate():
    """Token replacement is a second input (the reflect ids), never mixed into the denoising input."""
    ids = str_rows(7, 3000)
    c = noise(ids)
    assert ((c.inputs == ids) | (c.inputs == STR_MASK)).all()
    r = c.reflect
    assert torch.equal(r.mask, ids != PAD) and torch.equal(r.targets[ids != PAD], ids[ids != PAD])
    assert (r.inputs[ids == PAD] == STR_MASK).all()
    drawn = r.kind > 0
    assert torch.equal(drawn & (r.inputs != ids), r.kind == 2) and not drawn[ids == PAD].any()


def test_reflect_rate_and_uniform_ids():
    """Each row replaces with probability (1 - eps) t' + eps, t' ~ U[0, 1) its own draw: the per-row share of
    replaced tokens has mean (1 + eps) / 2 and the variance of a uniform on [eps, 1) plus binomial noise; picks
    are uniform over the whole vocabulary (the reference's randint(0, len(dict) - 1))."""
    n, N, eps = 8, 6000, 1e-3
    ids = str_rows(n, N)
    c = noise(ids)
    share = (c.reflect.kind > 0).sum(1).double() / n
    assert abs(float(share.mean()) - (1 + eps) / 2) < 0.01
    # Var(share) = Var(rate) + E[rate (1 - rate)] / n with rate ~ U[eps, 1)
    var = (1 - eps) ** 2 / 12 + (1 / 6) / n
    assert abs(float(share.var()) - var) < 0.01
    picks = c.reflect.inputs[c.reflect.kind > 0]
    freq = torch.bincount(picks, minlength=STR_V).double() / len(picks)
    assert (freq - 1 / STR_V).abs().max() < 4 * math.sqrt(1 / STR_V / len(picks))
    # the reflect draw is not the masking draw: its rate does not follow the mask share
    corr = torch.corrcoef(torch.stack([share, c.p_mask.double()]))[0, 1]
    assert abs(float(corr)) < 0.05


def test_strategy_weights_and_errors():
    ids = str_rows(6, 3000)
    c = mdiff4str_noise(
        ids, keyed.example_keys(0, 0, range(3000)), mask_id=STR_MASK, vocab_size=STR_V, special_ids=(PAD,),
        strategies=("full", "cloze"), weights=(0.25, 0.75))  # fmt: skip
    full = (c.mask.sum(1) == 6).double().mean()
    assert abs(float(full) - 0.25) < 0.03
    keys = keyed.example_keys(0, 0, range(3000))
    with pytest.raises(ValueError, match="strategy"):
        mdiff4str_noise(ids, keys, mask_id=STR_MASK, vocab_size=STR_V, strategies=("x",))
    with pytest.raises(ValueError, match="vocab_size"):
        mdiff4str_noise(ids, keys, mask_id=STR_MASK, vocab_size=0)


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
