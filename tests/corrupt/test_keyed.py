"""The keyed stream: uniform, independent of batch composition, overflow-free, and equal to its int64
reference definition."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed


def test_uniform_moments_and_range():
    u = keyed.uniform(keyed.example_keys(0, 0, torch.arange(64)), 4096)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.005
    assert abs(u.var().item() - 1 / 12) < 0.002
    # a chi-square test over 16 bins: 262144 draws, 15 dof; 99.9% quantile is 37.7
    counts = torch.bincount((u.flatten() * 16).long(), minlength=16).double()
    expected = u.numel() / 16
    assert ((counts - expected) ** 2 / expected).sum() < 37.7


def test_rows_and_streams_are_uncorrelated():
    keys = keyed.example_keys(3, 1, torch.arange(2))
    a, b = keyed.uniform(keys, 20000)
    c = keyed.uniform(keys[:1], 20000, stream=1)[0]
    for x, y in ((a, b), (a, c)):
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1]) < 0.03


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**40), st.integers(0, 1000), st.lists(st.integers(0, 2**31), min_size=1, max_size=8))
def test_row_depends_only_on_its_key(seed, epoch, index):
    keys = keyed.example_keys(seed, epoch, index)
    together = keyed.bits(keys, 17)
    for i, k in enumerate(keys):
        assert torch.equal(keyed.bits(k[None], 17)[0], together[i])
    assert together.min() >= 0 and together.max() < 2**32


def test_uniform64_has_53_bits():
    u = keyed.uniform64(keyed.example_keys(0, 0, [0]), 1000)[0]
    assert u.dtype == torch.float64
    assert ((u * 2**53) % 2**24 != 0).float().mean() > 0.9  # low bits are used, not just a float32 draw


# ---------------------------------------------------------------------------------------- reference oracle
# The stream's definition in plain int64 arithmetic (uint32 values, every multiply split into 16-bit halves so
# nothing overflows): the formulas in keyed's docstring. keyed computes the same hash in int32 arithmetic.

_M32 = 0xFFFFFFFF
_G = 0x9E3779B9


def _ref_mul32(x, c):
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _ref_mix32(x):
    x = x ^ (x >> 16)
    x = _ref_mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _ref_mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _ref_derive(keys, *salts):
    h = keys & _M32
    for s in salts:
        h = _ref_mix32((h + _G + (torch.as_tensor(s, dtype=torch.int64) & _M32)) & _M32)
        h = _ref_mix32(h ^ _G)
    return h


def _ref_example_keys(seed, epoch, index):
    index = torch.as_tensor(index, dtype=torch.int64) & _M32
    return _ref_derive(torch.as_tensor(seed, dtype=torch.int64) & _M32, epoch, index)


def _ref_bits(keys, n, stream):
    ctr = torch.arange(n, dtype=torch.int64)
    k = _ref_derive(keys.reshape(-1), stream)[:, None]
    return _ref_mix32((k + _ref_mix32((ctr * 2 + 1) & _M32)) & _M32)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(-(2**40), 2**40),
    st.integers(0, 2**33),
    st.lists(st.integers(-(2**33), 2**33), min_size=1, max_size=6),
    st.integers(0, 70),
    st.integers(-(2**33), 2**33),
)
def test_int32_stream_equals_the_int64_reference(seed, epoch, index, n, stream):
    ref_keys = _ref_example_keys(seed & _M32, epoch, index)
    keys = keyed.example_keys(seed, epoch, index)
    assert keys.dtype == torch.int64 and torch.equal(keys, ref_keys)
    ref = _ref_bits(keys, n, stream)
    got = keyed.bits(keys, n, stream)
    assert got.dtype == torch.int64 and torch.equal(got, ref)
    assert torch.equal(keyed.bits32(keys, n, stream).long() & _M32, ref)
    # the torch int32 backend (used off the CPU) gives the same bits as the numpy one
    assert torch.equal(keyed._torch_bits32(keys, n, stream, False).long() & _M32, ref)
    assert torch.equal(keyed._torch_bits32(keys, n, (stream, 7), True).long() & _M32, keyed.bits(keys, n, (stream, 7)))
    assert torch.equal(keyed._torch_derive(keys, stream, 5), _ref_derive(keys, stream, 5))
    assert torch.equal(keyed.uniform(keys, n, stream), (ref >> 8).float() * (1.0 / (1 << 24)))
    assert torch.equal(keyed.uniform(keys, n, stream, dtype=torch.float64), (ref >> 8).double() * (1.0 / (1 << 24)))
    hi, lo = _ref_bits(keys, n, 2 * stream + 1) >> 5, _ref_bits(keys, n, 2 * stream + 2) >> 6
    assert torch.equal(keyed.uniform64(keys, n, stream), (hi.double() * (1 << 26) + lo.double()) / 2.0**53)
    # several streams in one pass are the single streams stacked
    many = keyed.bits(keys, n, (stream, stream + 1, 7))
    assert torch.equal(many[0], ref) and torch.equal(many[2], _ref_bits(keys, n, 7))
    # derive with int and tensor salts, broadcasting a [B] key against [B, 3] salts
    salts = torch.arange(3)[None, :] * 977 + torch.as_tensor(index)[:, None]
    assert torch.equal(keyed.derive(keys, stream, 5), _ref_derive(keys, stream, 5))
    assert torch.equal(keyed.derive(keys[:, None], salts), _ref_derive(keys[:, None], salts))
    # content hash: lowbias32(value ^ lowbias32(2 j + 1))
    vals = torch.as_tensor(index)[None, :].expand(2, -1) + torch.tensor([[0], [stream]])
    ctr = _ref_mix32(torch.arange(vals.shape[1]) * 2 + 1)
    assert torch.equal(keyed.hash_positions(vals), _ref_mix32((vals & _M32) ^ ctr))
