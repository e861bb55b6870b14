"""Every compiled form (additive, BlockMask, Flex/SDPA/eager outputs) equals the dense reference."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.attention import mods as M
from masklab.attention.compile import (
    BlockMaskCache,
    attention,
    block_mask_to_dense,
    to_additive,
    to_block_mask,
    to_dense,
)

# leaves that work for any (q_len, kv_len)
LEAVES = [
    st.just(M.causal()),
    st.just(M.full()),
    st.builds(M.sliding_window, st.integers(1, 12)),
    st.builds(lambda w: M.sliding_window(w, causal=False), st.integers(1, 12)),
    st.builds(M.dilated_sliding_window, st.integers(1, 5), st.integers(1, 3)),
    st.builds(M.prefix_lm, st.integers(0, 20)),
    st.builds(M.sinks, st.integers(0, 4)),
    st.builds(M.block_causal, st.integers(1, 8)),
]
generic = st.recursive(
    st.one_of(*LEAVES),
    lambda inner: st.one_of(
        st.builds(M.and_masks, inner, inner),
        st.builds(M.or_masks, inner, inner),
        st.builds(M.not_mask, inner),
    ),
    max_leaves=4,
)


@st.composite
def mask_and_shape(draw):
    """A random mask tree and a shape it is defined for (document masks force q_len == kv_len == sum)."""
    fn = draw(generic)
    if draw(st.booleans()):
        lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
        doc = M.document(lengths, causal=draw(st.booleans()))
        fn = draw(st.sampled_from([M.and_masks, M.or_masks]))(fn, doc)
        return fn, sum(lengths), sum(lengths)
    return fn, draw(st.integers(1, 40)), draw(st.integers(1, 40))


@settings(max_examples=30, deadline=None)
@given(case=mask_and_shape(), block=st.sampled_from([4, 8, 16]))
def test_block_mask_and_additive_equal_dense(case, block):
    fn, q_len, kv_len = case
    dense = to_dense(fn, q_len, kv_len)
    bm = to_block_mask(fn, q_len, kv_len, block_size=block, cache=None)
    # no visible pair sits in a skipped tile, and "full" tiles are really full
    assert torch.equal(block_mask_to_dense(bm), dense)
    add = to_additive(fn, q_len, kv_len)
    assert torch.equal(add == 0, dense)
    assert bool((add[~dense] == torch.finfo(torch.float32).min).all())


@settings(max_examples=6, deadline=None)
@given(case=mask_and_shape(), heads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_flex_sdpa_eager_outputs_agree(case, heads, seed):
    fn, q_len, kv_len = case
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, q_len, 8, generator=g)
    k = torch.randn(2, heads, kv_len, 8, generator=g)
    v = torch.randn(2, heads, kv_len, 8, generator=g)
    rows = to_dense(fn, q_len, kv_len)[0, 0].any(-1)  # fully hidden rows are backend-defined (NaN / 0 / mean)
    ref = attention(q, k, v, fn, backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Flex without torch.compile warns that it is unfused
        flex = attention(q, k, v, fn, backend="flex", compiled=False, block_size=8, cache=None)
    sdpa = attention(q, k, v, fn, backend="sdpa")
    torch.testing.assert_close(flex[:, :, rows], ref[:, :, rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sdpa[:, :, rows], ref[:, :, rows], atol=1e-5, rtol=1e-5)


def test_eager_reference_is_softmax_over_visible_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
    out = attention(q, k, v, M.sliding_window(2), backend="eager")
    for i in range(6):
        keep = [j for j in range(6) if i - 2 < j <= i]
        s = (q[0, 0, i] @ k[0, 0, keep].T) / 2.0
        torch.testing.assert_close(out[0, 0, i], torch.softmax(s, -1) @ v[0, 0, keep])


def test_per_row_padding_block_mask():
    fn = M.and_masks(M.causal(), M.padding([5, 12, 9]))
    bm = to_block_mask(fn, 12, 12, block_size=4, cache=None)
    assert bm.shape[0] == 3
    assert torch.equal(block_mask_to_dense(bm), to_dense(fn, 12, 12))


def test_cache_hits_per_shape_and_counts():
    cache = BlockMaskCache(maxsize=2)
    fn = M.sliding_window(4)
    a = to_block_mask(fn, 32, 32, block_size=8, cache=cache)
    assert to_block_mask(fn, 32, 32, block_size=8, cache=cache) is a
    b = to_block_mask(fn, 16, 16, block_size=8, cache=cache)
    assert b is not a and b.shape[-2:] == (16, 16)
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    assert cache.stats.hit_rate == pytest.approx(1 / 3)
    to_block_mask(M.causal(), 8, 8, block_size=8, cache=cache)  # evicts the least recently used (32, 32)
    assert len(cache) == 2
    to_block_mask(fn, 32, 32, block_size=8, cache=cache)
    assert cache.stats.misses == 4


def test_shape_mismatch_with_cached_block_mask_is_clear():
    cache = BlockMaskCache()
    bm = to_block_mask(M.causal(), 16, 16, block_size=8, cache=cache)
    q = torch.randn(1, 2, 24, 8)
    with pytest.raises(ValueError, match=r"block mask built for .*16, 16.* does not match .*Q=24"):
        with torch.no_grad():
            attention(q, q, q, bm, backend="flex", compiled=False)


def test_square_and_length_constraints_are_enforced():
    doc = M.document([4, 4])
    with pytest.raises(ValueError, match="q_len == kv_len.*q_len=8, kv_len=6"):
        to_dense(doc, 8, 6)
    with pytest.raises(ValueError, match="defined for length 8"):
        to_block_mask(doc, 10, 10, cache=None)
    with pytest.raises(ValueError, match="batch 2"):
        to_dense(M.padding([3, 4]), 4, 4, batch=3)
    with pytest.raises(ValueError, match="q_len"):
        to_dense(M.causal(), 0, 4)


def test_flex_refuses_cpu_backward_and_unknown_backend():
    q = torch.randn(1, 1, 8, 4, requires_grad=True)
    with pytest.raises(ValueError, match="no backward on CPU"):
        attention(q, q, q, M.causal(), backend="flex")
    with pytest.raises(ValueError, match="'dense'"):
        attention(q, q, q, M.causal(), backend="dense")


def test_sdpa_backend_trains():
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    attention(q, q, q, M.document([3, 5]), backend="sdpa").sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
