"""float64 inverse-CDF sampling against the exact distribution, and the fp32 Gumbel-max truncation it avoids
(Zheng et al. 2024, Sec. 4: fp32 Gumbel noise is capped, so rare tokens are under-drawn and entropy drops)."""

import math

import pytest
import torch
from scipy.stats import chisquare

from masklab.sample.categorical import categorical, filter_logits, gumbel_argmax


def _long_tail(V=4096):
    """A few likely tokens and thousands of rare ones (Zipf-like): most of the entropy sits in the tail."""
    r = torch.arange(1, V + 1, dtype=torch.float64)
    return -1.2 * r.log()  # p ~ r^-1.2


def test_float64_sampling_matches_a_long_tailed_distribution():
    logits = _long_tail()
    p = logits.softmax(-1)
    n = 8000
    ids = categorical(logits.float().expand(n, -1), generator=torch.Generator().manual_seed(0))
    # bins of about equal mass, ordered by token probability: the tail bins hold thousands of tokens
    edges = torch.searchsorted(p.cumsum(0), torch.linspace(0.1, 0.9, 9, dtype=torch.float64)).unique()
    edges = edges[edges > 0]
    bins = torch.bucketize(ids, edges, right=True)
    counts = torch.bincount(bins, minlength=len(edges) + 1).double()
    bounds = zip([0] + edges.tolist(), edges.tolist() + [len(p)], strict=True)
    mass = torch.stack([p[lo:hi].sum() for lo, hi in bounds])
    assert chisquare(counts.numpy(), (mass * n).numpy()).pvalue > 1e-3


def test_fp32_gumbel_lowers_entropy_where_float64_does_not():
    """One head token and 4096 tail tokens trailing by 20 nats (many low-probability tokens).

    Every fp32 uniform torch.rand returns lies in [2**-24, 1 - 2**-24] (or is 0: noise -inf), so the noise gap
    between two tokens is below 19.45 and no tail token can ever win: fp32 Gumbel-max samples have entropy 0
    here, whatever the seed. The true entropy is positive, and float64 inverse CDF gives the tail exactly its
    mass: with uniforms stratified over the top of [0, 1) the tail fraction is exact, not a Monte Carlo
    estimate."""
    u = torch.tensor([2.0**-24, 1 - 2.0**-24], dtype=torch.float32)
    g = -torch.log(-torch.log(u))
    assert float(g[1] - g[0]) < 19.5
    V_tail, D = 4096, 20.0
    logits = torch.cat([torch.zeros(1), torch.full((V_tail,), -D)])
    tail = V_tail * math.exp(-D) / (1 + V_tail * math.exp(-D))
    true_entropy = -(1 - tail) * math.log2(1 - tail) - tail * math.log2(tail / V_tail)
    assert true_entropy > 1e-4
    fp32 = gumbel_argmax(logits.expand(4000, -1), generator=torch.Generator().manual_seed(0))
    assert int((fp32 > 0).sum()) == 0  # fp32 sample entropy: 0 bits
    m = 4000
    u64 = 1 - (torch.arange(m, dtype=torch.float64) + 0.5) / m * (4 * tail)  # the top 4 * tail of [0, 1)
    draws = categorical(logits.expand(m, -1), u=u64)
    assert abs(float((draws > 0).double().mean()) - 0.25) < 2.0 / m
    assert len(draws[draws > 0].unique()) > 500  # spread over the tail, not stuck on one token


@pytest.mark.parametrize("k,p", [(3, None), (None, 0.5), (2, 0.9)])
def test_top_k_top_p_keep_only_the_allowed_tokens(k, p):
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    kept = torch.isfinite(filter_logits(logits, k, p))[0]
    probs = logits.softmax(-1)[0]
    n = k or 5
    if p is not None:  # smallest prefix whose mass reaches p
        n = min(n, int((probs.cumsum(0) < p).sum()) + 1)
    assert kept.tolist() == [i < n for i in range(5)]
    draws = categorical(logits.expand(2000, -1), top_k=k, top_p=p, generator=torch.Generator().manual_seed(1))
    assert int(draws.max()) < n


def test_temperature_zero_is_greedy():
    logits = torch.randn(50, 17, generator=torch.Generator().manual_seed(0))
    assert torch.equal(categorical(logits, temperature=0.0), logits.argmax(-1))


def test_nan_temperature_and_nan_logits_are_value_errors():
    with pytest.raises(ValueError, match="temperature"):
        categorical(torch.zeros(2, 5), temperature=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        categorical(torch.tensor([[0.0, float("nan"), 1.0]]))


def test_batch_prompts_appends_n_masks():
    from masklab.sample.generate import batch_prompts

    x = batch_prompts([[5, 6], [7]], n_masks=3, mask_id=1, pad_id=0)
    assert x.tolist() == [[5, 6, 1, 1, 1], [7, 1, 1, 1, 0]]
