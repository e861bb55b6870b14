"""The optional numba kernels (masklab.corrupt._kernels) give bit for bit the records of the numpy CPU paths and
of the dense torch paths used on other devices, for random, whole-word and frame span masks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import jit, keyed, tokens
from masklab.corrupt._backend import use_backend
from masklab.corrupt.frames import span_mask
from masklab.corrupt.tokens import random_mask, whole_word_mask

pytest.importorskip("numba")  # the dev install has it; without it the kernels are never used

MASK, V = 3, 60
# 1000 lies outside the vocabulary: found by the list, not the table. The kernels' eligibility bitset covers
# ids up to 8 ceil(V / 8) = 64, so V + 1 is a special id past V inside it.
SPECIAL = [0, 1, 2, 3, V + 1, 1000]


def three_ways(fn):
    """``fn()`` with masklab's CPU builders as the numba kernel, the numpy path and the dense torch path."""
    out = []
    for name in ("kernel", "numpy", "torch"):
        with use_backend(name):
            out.append(fn())
    return out


def assert_same_records(records):
    fields = ("inputs", "targets", "mask", "kind")
    for other in records[1:]:
        for f in fields:
            a, b = getattr(records[0], f), getattr(other, f)
            assert a.dtype == b.dtype and torch.equal(a, b), f
    assert all(r.weights is None for r in records)  # BERT-style: every selected position weighs 1


def toy_batch(seed: int, B: int, n: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, n), generator=g)
    ids[torch.rand(B, n, generator=g) < 0.05] = 1000  # a special id outside the vocabulary
    ids[torch.rand(B, n, generator=g) < 0.05] = 1001  # an ordinary id outside the vocabulary
    ids[torch.rand(B, n, generator=g) < 0.05] = V + 1  # special, past V, inside the kernels' bitset
    ids[torch.rand(B, n, generator=g) < 0.05] = V + 2  # ordinary, past V, inside the kernels' bitset
    can = torch.rand(B, n, generator=g) < 0.9
    return g, ids, can


def test_kernels_are_used_when_numba_is_installed():
    with use_backend("kernel"):
        assert jit.kernels() is not None
    with use_backend("numpy"):
        assert jit.kernels() is None


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    B=st.integers(1, 6),
    n=st.integers(1, 150),
    prob=st.sampled_from([0.0, 0.15, 0.5, 1.0]) | st.floats(0.0, 1.0),
    rand=st.floats(0.0, 0.2),
    with_can=st.booleans(),
    int32=st.booleans(),
)
def test_random_mask_kernel_equals_numpy_and_torch(seed, B, n, prob, rand, with_can, int32):
    _, ids, can = toy_batch(seed, B, n)
    ids = ids.int() if int32 else ids
    keys = keyed.example_keys(seed, 2, range(B))
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=prob, mix=(0.8 - rand, 0.1 + rand, 0.1))
    kw["can"] = can if with_can else None
    assert_same_records(three_ways(lambda: random_mask(ids, keys, **kw)))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    B=st.integers(1, 6),
    n=st.integers(1, 150),
    prob=st.floats(0.0, 1.0),
    rand=st.floats(0.0, 0.5),
    with_can=st.booleans(),
)
def test_whole_word_kernel_equals_numpy_and_torch(seed, B, n, prob, rand, with_can):
    """Words of one or more tokens, tokens outside any word (-1), and ineligible tokens inside words."""
    g, ids, can = toy_batch(seed, B, n)
    wid = (torch.rand(B, n, generator=g) < 0.6).long().cumsum(1)
    wid[torch.rand(B, n, generator=g) < 0.1] = -1
    keys = keyed.example_keys(seed, 1, range(B))
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=prob, mix=(0.8 - rand, 0.1 + rand, 0.1))
    kw["can"] = can if with_can else None
    assert_same_records(three_ways(lambda: whole_word_mask(ids, keys, wid, **kw)))


@settings(max_examples=60, deadline=None)
@given(
    B=st.integers(1, 9),
    T=st.integers(1, 600),
    p=st.floats(0.0, 1.0),
    M=st.integers(1, 40),
    min_masks=st.integers(0, 4),
    padded=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_static_span_kernel_equals_numpy_and_torch(B, T, p, M, min_masks, padded, seed):
    """The radix select finds exactly the smallest start scores (ties to the earlier start), for every count
    from none to all starts, with and without padding."""
    M = min(M, T)
    lengths = torch.randint(0, T + 1, (B,), generator=torch.Generator().manual_seed(seed)) if padded else None
    kernel, numpy, dense = three_ways(lambda: span_mask((B, T), p, M, lengths=lengths, min_masks=min_masks, seed=seed))
    assert torch.equal(kernel, numpy) and torch.equal(kernel, dense)


def test_static_span_kernel_breaks_ties_by_position():
    """Equal start scores are rare with 32-bit hashes, so force them: the reference rule (keyed.order ties go
    to the earlier position) is applied by the kernel's bucket sort as by smallest_k."""
    with use_backend("kernel"):
        kern = jit.kernels()
    keys = np.array([5], dtype=np.int64)
    T, M = 50, 1
    ctr = np.zeros(T + 1, dtype=np.uint32)  # every start gets the same score: ties everywhere
    mask = kern.static_spans(keys, ctr, np.array([T]), T, 0.2 / M, M, 0, False)
    assert mask.sum() == 10 and mask[0, :10].all()  # n = floor(50 * 0.2 + eps): the earliest 10 starts win


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 5), n=st.integers(1, 80))
def test_word_ids_from_offsets_kernel_equals_torch(seed, B, n):
    """Offsets that touch (one word), gaps (a new word) and specials (-1, and a word break after them)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 4, (B, n), generator=g)
    gaps = (torch.rand(B, n, generator=g) < 0.4).long()
    ends = (lengths + gaps).cumsum(1)
    offsets = torch.stack([ends - lengths, ends], dim=-1)
    special = torch.rand(B, n, generator=g) < 0.15
    offsets[special] = 0
    kernel, _, dense = three_ways(lambda: tokens.word_ids_from_offsets(offsets, special))
    assert torch.equal(kernel, dense)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    epoch=st.integers(0, 2**33),
    index=st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=20),
)
def test_example_keys_kernel_equals_numpy_and_torch(seed, epoch, index):
    """Large and negative values keep their low 32 bits on every path."""
    kernel, numpy, _ = three_ways(lambda: keyed.example_keys(seed, epoch, index))
    assert torch.equal(kernel, numpy)


def test_plan_fields_are_the_kernels_last_parameters():
    """The cached plan is unpacked positionally after the per-batch arrays: a reordering on either side must
    fail here, not silently swap two integer arguments."""
    import inspect

    from masklab.corrupt import _kernels

    for kernel, data in ((_kernels.random_mask, 4), (_kernels.whole_word_mask, 5)):
        params = list(inspect.signature(kernel.py_func).parameters)
        assert params[:4] == ["ids", "keys", "ctr", "can"]
        assert params[data:] == list(tokens._Plan._fields)


@pytest.mark.parametrize("name", ["kernel", "numpy", "torch"])
def test_one_key_serves_the_batch_and_a_wrong_count_is_refused(name):
    """One key broadcasts to every row on every path (the kernels read keys[b] unchecked, so they must get a
    [B] array); any other count that is not B is a clear error, not a read past the end."""
    g, ids, can = toy_batch(5, 6, 40)
    one = keyed.example_keys(7, 0, range(1))
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.5)
    wid = torch.arange(40).expand(6, 40) // 3
    with use_backend(name):
        c = random_mask(ids, one, **kw)
        w = whole_word_mask(ids, one, wid, **kw)
        for bad in (keyed.example_keys(7, 0, range(5)), keyed.example_keys(7, 0, range(64))):
            with pytest.raises(ValueError, match="keys"):
                random_mask(ids, bad, **kw)
            with pytest.raises(ValueError, match="keys"):
                whole_word_mask(ids, bad, wid, **kw)
    with use_backend("torch"):
        assert_same_records([c, random_mask(ids, one, **kw)])
        assert_same_records([w, whole_word_mask(ids, one, wid, **kw)])
