"""SpanBERT span masking: exact word budget, whole words, no overlap, minimum gap, span-length law (Joshi et
al.
2020, Sec. 3.1: Geo(0.2) clipped at 10, mean 3.8)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed
from masklab.corrupt.spans import length_table, span_mask

SPECIAL, MASK, V = [0, 1, 2, 3], 3, 60


def runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of maximal True runs of a 1-D bool tensor (test-side reference)."""
    out, j, n = [], 0, len(row)
    while j < n:
        if row[j]:
            k = j
            while k < n and row[k]:
                k += 1
            out.append((j, k - j))
            j = k
        else:
            j += 1
    return out


def test_geometric_table_is_spanberts():
    t = length_table("geometric", p=0.2, high=10)
    assert t[0] == 0 and t.argmax() == 1 and len(t) == 11
    assert abs(float((t * torch.arange(11)).sum()) - 3.8) < 0.01  # "mean span length 3.8"
    assert torch.allclose(t[2:] / t[1:-1], torch.full((9,), 0.8, dtype=torch.float64))
    assert length_table("fixed", high=4)[4] == 1
    assert torch.allclose(length_table("uniform", low=2, high=5)[2:], torch.full((4,), 0.25, dtype=torch.float64))
    p = length_table("poisson", lam=3.0, high=10)
    assert p[0] == 0 and abs(float(p[3] / p[2]) - 1.0) < 1e-9  # lam^3/3! == lam^2/2! at lam = 3


@st.composite
def rows(draw):
    B = draw(st.integers(1, 5))
    L = draw(st.integers(2, 60))
    ids = torch.tensor(draw(st.lists(st.lists(st.integers(0, V - 1), min_size=L, max_size=L), min_size=B, max_size=B)))
    new_word = torch.tensor(draw(st.lists(st.booleans(), min_size=L, max_size=L)))
    wid = new_word.long().cumsum(0).expand(B, L).clone()
    return ids, wid


@settings(max_examples=30, deadline=None)
@given(
    data=rows(),
    prob=st.floats(0, 1),
    gap=st.integers(0, 3),
    dist=st.sampled_from(["geometric", "poisson", "uniform", "fixed"]),
    seed=st.integers(0, 2**31),
)
def test_exact_word_budget_whole_words_and_gap(data, prob, gap, dist, seed):
    ids, wid = data
    B, L = ids.shape
    keys = keyed.example_keys(seed, 0, range(B))
    c = span_mask(
        ids,
        keys,
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        word_ids=wid,
        prob=prob,
        min_gap=gap,
        lengths=dist,
        high=4 if dist == "fixed" else 10,
    )
    elig = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert not (c.mask & ~elig).any()
    for r in range(B):
        # words: maximal runs of eligible tokens with the same word id
        starts = [j for j in range(L) if elig[r, j] and (j == 0 or not elig[r, j - 1] or wid[r, j] != wid[r, j - 1])]
        word_of = {}
        for w, s in enumerate(starts):
            j = s
            while j < L and elig[r, j] and wid[r, j] == wid[r, s]:
                word_of[j] = w
                j += 1
        W = len(starts)
        on = torch.zeros(W, dtype=torch.bool)
        for j, w in word_of.items():
            on[w] |= bool(c.mask[r, j])
        for j, w in word_of.items():
            assert bool(c.mask[r, j]) == bool(on[w]), "span cut a word"
        assert int(on.sum()) == int(W * prob + 0.5), "budget not exact"
        spans = runs(on)
        if gap and len(spans) > 1:
            gaps = [b[0] - (a[0] + a[1]) for a, b in zip(spans, spans[1:], strict=False)]
            assert min(gaps) >= gap, "min gap violated"


def test_span_lengths_follow_the_table():
    """With a gap of 1 spans never touch, so run lengths are the drawn lengths (only the last one is cut)."""
    B, L = 400, 200
    ids = torch.randint(4, V, (B, L))
    c = span_mask(
        ids,
        keyed.example_keys(0, 0, range(B)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        prob=0.15,
        min_gap=1,
    )
    lens = torch.tensor([n for r in range(B) for _, n in runs(c.mask[r])])
    assert lens.max() <= 10 and (c.mask.sum(1) == 30).all()
    want = length_table()
    hist = torch.bincount(lens, minlength=11).double() / len(lens)
    # each row has one cut span of ~9 total, so short lengths are a bit over-represented
    assert (hist[1:] - want[1:]).abs().max() < 0.05, (hist, want)
    assert 3.3 < lens.double().mean() < 3.9


def test_per_span_mix_is_shared_within_a_span():
    B, L = 200, 100
    ids = torch.randint(4, V, (B, L))
    c = span_mask(
        ids,
        keyed.example_keys(0, 0, range(B)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        prob=0.2,
        min_gap=1,
    )
    as_mask = c.inputs == MASK
    for r in range(20):
        for s, n in runs(c.mask[r]):
            assert as_mask[r, s : s + n].all() or not as_mask[r, s : s + n].any()
    frac = as_mask[c.mask].float().mean().item()
    assert abs(frac - 0.8) < 0.05


def test_overlap_allowed_is_union_within_budget():
    ids = torch.randint(4, V, (50, 80))
    c = span_mask(
        ids,
        keyed.example_keys(0, 0, range(50)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        prob=0.3,
        no_overlap=False,
    )
    assert (c.mask.sum(1) <= 24).all() and c.mask.sum() > 0


def test_bad_arguments():
    ids = torch.randint(4, V, (2, 10))
    k = keyed.example_keys(0, 0, [0, 1])
    with pytest.raises(ValueError, match="prob"):
        span_mask(ids, k, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=2.0)
    with pytest.raises(ValueError, match="distribution"):
        span_mask(ids, k, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, lengths="zipf")
    with pytest.raises(ValueError, match="min_gap"):
        span_mask(ids, k, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, min_gap=-1)
