"""N:M, unstructured and block masks: structural properties and a brute-force oracle."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.sparsity.nm import block_mask, is_nm, nm_mask, nm_patterns, sparsity, unstructured_mask


@st.composite
def nm_case(draw):
    m = draw(st.integers(2, 8))
    n = draw(st.integers(0, m - 1))
    rows = draw(st.integers(1, 6))
    groups = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    w = torch.randn(rows, groups * m, generator=torch.Generator().manual_seed(seed))
    return n, m, w


@settings(max_examples=50, deadline=None)
@given(nm_case())
def test_every_group_of_m_keeps_exactly_n_and_those_are_the_top_n(case):
    n, m, w = case
    mask = nm_mask(w, n, m)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert is_nm(mask, n, m)
    g_w, g_k = w.abs().reshape(w.shape[0], -1, m), mask.reshape(w.shape[0], -1, m)
    if 0 < n:  # every kept weight outscores every pruned weight of its group
        kept_min = torch.where(g_k, g_w, torch.inf).amin(-1)
        pruned_max = torch.where(~g_k, g_w, -torch.inf).amax(-1)
        assert (kept_min >= pruned_max).all()


@settings(max_examples=30, deadline=None)
@given(nm_case())
def test_scores_choose_the_mask_not_the_weights(case):
    n, m, w = case
    scores = -w.abs()  # reversed order: keeps the smallest weights
    mask = nm_mask(w, n, m, scores=scores)
    assert torch.equal(mask, nm_mask(scores - scores.min() + 1.0, n, m))  # same order, all positive
    assert is_nm(mask, n, m)


def test_2of4_on_a_hand_example():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, 0.0, -0.2, 1.0]])
    expected = torch.tensor([[False, True, True, False, True, False, False, True]])
    assert torch.equal(nm_mask(w, 2, 4), expected)


def test_conv_weight_groups_along_flattened_input_dims():
    w = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))  # (out, in, kh, kw): 8 inputs per row
    mask = nm_mask(w, 2, 4)
    assert mask.shape == w.shape and is_nm(mask.reshape(3, -1), 2, 4)


@pytest.mark.parametrize("n,m", [(4, 4), (5, 4), (2, 2)])
def test_n_not_below_m_is_refused(n, m):
    with pytest.raises(ValueError, match="n must be smaller than m"):
        nm_mask(torch.randn(2, 8), n, m)


def test_indivisible_input_dim_refused_unless_padded():
    w = torch.tensor([[5.0, 1.0, 2.0, 3.0, 0.5, 9.0]])  # 6 inputs: one full group of 4, a partial group of 2
    with pytest.raises(ValueError, match="not divisible by m=4"):
        nm_mask(w, 2, 4)
    mask = nm_mask(w, 2, 4, pad=True)
    assert mask.tolist() == [[True, False, False, True, True, True]]  # partial group keeps min(n, 2) = 2
    assert nm_mask(w, 1, 4, pad=True)[0, 4:].tolist() == [False, True]  # partial group keeps its best 1


def test_one_dim_weight_refused():
    with pytest.raises(ValueError, match="2 dimensions"):
        nm_mask(torch.randn(8))


def test_patterns_are_all_c_m_n_distinct_rows_with_n_ones():
    for n, m in [(1, 4), (2, 4), (2, 8), (4, 8)]:
        p = nm_patterns(n, m)
        assert p.shape == (math.comb(m, n), m)
        assert (p.sum(1) == n).all() and len({tuple(r.tolist()) for r in p}) == p.shape[0]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.95), st.booleans())
def test_unstructured_prunes_floor_fraction_of_lowest_scores(seed, frac, per_row):
    w = torch.randn(5, 12, generator=torch.Generator().manual_seed(seed))
    mask = unstructured_mask(w, frac, per_row=per_row)
    groups = mask.reshape(5, -1) if per_row else mask.reshape(1, -1)
    a = w.abs().reshape(groups.shape)
    assert ((~groups).sum(1) == math.floor(frac * groups.shape[1])).all()
    kept_min = torch.where(groups, a, torch.inf).amin(1)
    pruned_max = torch.where(~groups, a, -torch.inf).amax(1)
    assert (kept_min >= pruned_max).all()


def test_block_mask_prunes_whole_lowest_tiles():
    w = torch.ones(4, 8)
    w[:2, :4] = 0.01  # the weakest 2x4 tile
    mask = block_mask(w, 0.25, block=(2, 4))
    assert (~mask).sum() == 8 and not mask[:2, :4].any() and mask[2:].all() and mask[:, 4:].all()
    assert sparsity(mask) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="does not tile"):
        block_mask(torch.ones(4, 6), 0.5, block=(2, 4))
