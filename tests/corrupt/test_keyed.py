"""The keyed stream: uniform, independent of batch composition, and overflow-free."""

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
