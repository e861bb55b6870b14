"""Mask factories against per-pair definitions (papers) and transformers' own mask functions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.masking_utils import (
    causal_mask_function,
    sliding_window_bidirectional_mask_function,
    sliding_window_causal_mask_function,
)

from masklab.attention import mods as M
from masklab.attention.compile import to_dense


def oracle(rule, q_len, kv_len, batch=1):
    """Python double loop over (b, i, j): the definition, written once per mask, no tensors."""
    return torch.tensor([[[[bool(rule(b, i, j)) for j in range(kv_len)] for i in range(q_len)]] for b in range(batch)])


def hf_dense(fn, q_len, kv_len):
    q = torch.arange(q_len).view(1, 1, -1, 1)
    kv = torch.arange(kv_len).view(1, 1, 1, -1)
    z = torch.zeros(1, 1, 1, 1, dtype=torch.long)
    return fn(z, z, q, kv).expand(1, 1, q_len, kv_len)


@settings(max_examples=30, deadline=None)
@given(
    q_len=st.integers(1, 24),
    kv_len=st.integers(1, 24),
    w=st.integers(1, 10),
    d=st.integers(1, 4),
    n=st.integers(0, 12),
    block=st.integers(1, 6),
)
def test_factories_match_their_definitions(q_len, kv_len, w, d, n, block):
    cases = {
        M.full(): lambda b, i, j: True,
        M.causal(): lambda b, i, j: j <= i,
        M.prefix_lm(n): lambda b, i, j: j < n or j <= i,  # T5 Fig. 3: full over the prefix, causal after
        M.sliding_window(w): lambda b, i, j: i - w < j <= i,  # w most recent keys, self included
        M.sliding_window(w, causal=False): lambda b, i, j: abs(i - j) < w,
        # Longformer dilated window: w keys at distances 0, d, ..., (w-1)d
        M.dilated_sliding_window(w, d): lambda b, i, j: any(i - j == t * d for t in range(w)),
        M.sinks(n): lambda b, i, j: j < n,
        # block diffusion: bidirectional within block, causal across blocks
        M.block_causal(block): lambda b, i, j: j < (i // block + 1) * block,
    }
    for fn, rule in cases.items():
        assert torch.equal(to_dense(fn, q_len, kv_len), oracle(rule, q_len, kv_len)), fn.__name__


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5), causal=st.booleans())
def test_document_mask_is_block_diagonal(lengths, causal):
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    doc = [k for k, n in enumerate(lengths) for _ in range(n)]
    total = sum(lengths)
    fn = M.document(lengths, causal=causal)
    rule = (lambda b, i, j: doc[i] == doc[j] and j <= i) if causal else (lambda b, i, j: doc[i] == doc[j])
    dense = to_dense(fn, total, total)
    assert torch.equal(dense, oracle(rule, total, total))
    # each non-causal row sees exactly its document's length
    if not causal:
        assert dense[0, 0].sum(-1).tolist() == [n for n in lengths for _ in range(n)]
    assert len(starts) == len(lengths)


def test_padding_and_bidirectional_hide_only_padded_keys():
    lengths = [5, 2, 7]
    for fn in (M.padding(lengths), M.bidirectional(lengths)):
        dense = to_dense(fn, 7, 7)
        assert dense.shape == (3, 1, 7, 7)
        assert torch.equal(dense, oracle(lambda b, i, j: j < lengths[b], 7, 7, batch=3))


@pytest.mark.parametrize("w", [1, 3, 8])
def test_sliding_window_equals_transformers(w):
    # independent oracle: transformers.masking_utils defines the same windows
    assert torch.equal(to_dense(M.sliding_window(w), 12, 12), hf_dense(sliding_window_causal_mask_function(w), 12, 12))
    # HF's bidirectional window counts distance <= w; ours keeps the causal convention (distance < w)
    assert torch.equal(
        to_dense(M.sliding_window(w, causal=False), 12, 12),
        hf_dense(sliding_window_bidirectional_mask_function(w - 1), 12, 12),
    )
    assert torch.equal(to_dense(M.causal(), 9, 12), hf_dense(causal_mask_function, 9, 12))


def test_combinators_follow_boolean_algebra():
    a, b = M.causal(), M.sliding_window(3)
    da, db = to_dense(a, 10, 10), to_dense(b, 10, 10)
    assert torch.equal(to_dense(M.and_masks(a, b), 10, 10), da & db)
    assert torch.equal(to_dense(M.or_masks(a, M.sinks(2)), 10, 10), da | to_dense(M.sinks(2), 10, 10))
    assert torch.equal(to_dense(M.not_mask(a), 10, 10), ~da)
    # De Morgan
    lhs = M.not_mask(M.and_masks(a, b))
    rhs = M.or_masks(M.not_mask(a), M.not_mask(b))
    assert torch.equal(to_dense(lhs, 10, 10), to_dense(rhs, 10, 10))


def test_names_describe_the_mask():
    assert M.sliding_window(64).__name__ == "sliding_window_64"
    assert M.document([3, 5]).__name__ == "document_3_5"
    assert M.and_masks(M.causal(), M.or_masks(M.sliding_window(4), M.sinks(2))).__name__ == (
        "causal&(sliding_window_4|sinks_2)"
    )
    assert M.not_mask(M.or_masks(M.causal(), M.sinks(1))).__name__ == "~(causal|sinks_1)"
    # combinators carry the constraints of their parts
    both = M.and_masks(M.causal(), M.document([2, 2]))
    assert both.square and both.seq_len == 4


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: M.sliding_window(-4), "-4"),
        (lambda: M.sliding_window(0), "window"),
        (lambda: M.dilated_sliding_window(3, 0), "dilation"),
        (lambda: M.prefix_lm(-1), "-1"),
        (lambda: M.sinks(-2), "-2"),
        (lambda: M.block_causal(0), "block"),
        (lambda: M.document([3, 0]), "document lengths"),
        (lambda: M.padding([3, -1]), "padding lengths"),
        (lambda: M.sliding_window(2.5), "2.5"),
        (lambda: M.and_masks(M.document([2]), M.document([3])), "different lengths"),
        (lambda: M.and_masks(), "at least one"),
        (lambda: M.table(torch.ones(3, 3)), "bool"),
        (lambda: M.table(torch.ones(3, 4, dtype=torch.bool)), "square"),
    ],
)
def test_bad_arguments_raise_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_table_is_its_matrix_and_composes(n, seed):
    visible = torch.rand(n, n, generator=torch.Generator().manual_seed(seed)) < 0.5
    assert torch.equal(to_dense(M.table(visible), n, n)[0, 0], visible)
    union = to_dense(M.or_masks(M.causal(), M.table(visible)), n, n)[0, 0]
    assert torch.equal(union, visible | torch.ones(n, n, dtype=torch.bool).tril())
    with pytest.raises(ValueError, match="defined for length"):
        to_dense(M.table(visible), n + 1, n + 1)
