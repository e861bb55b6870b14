"""Layer masking (Balasubramanian & Feizi 2023): the output does not depend on the values under the mask, an
all-visible mask is the plain CNN, and the neighbour fill is the reference's fast_fmm, checked against a
pixel-by-pixel loop."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masklab.models.layer_masking import LayerMasking, fill, neighbour_fill


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)  # weight init of the toy CNN only
    cnn = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.GELU()),
        nn.MaxPool2d(2, ceil_mode=False), nn.Conv2d(4, 6, 1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 3),
    )  # fmt: skip
    with torch.no_grad():
        cnn[1].running_mean.uniform_(-1, 1)
        cnn[1].running_var.uniform_(0.5, 2)
    return cnn.eval()


CNN = LayerMasking(_cnn())


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """A toy CNN: one torch thread (the shared `one_thread` fixture)."""


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.floats(0.0, 0.9),
    a=st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf"))),
    b=st.floats(-1e6, 1e6),
)
def test_output_does_not_depend_on_masked_pixels(seed, hidden, a, b):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 9, 9, generator=g)
    mask = torch.rand(3, 9, 9, generator=g) >= hidden  # True = visible
    noise = torch.randn(3, 2, 9, 9, generator=g)
    fill_a = torch.where(mask[:, None], x, a)  # a constant (even NaN or inf) under the mask
    fill_b = torch.where(mask[:, None], x, b + 100 * noise)  # anything else under the mask
    assert torch.equal(CNN(fill_a, mask), CNN(fill_b, mask))


def test_an_all_visible_mask_is_the_plain_cnn():
    x = torch.randn(4, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(CNN(x, torch.ones(9, 9, dtype=torch.bool)), CNN.model(x))
    assert torch.equal(CNN(x), CNN.model(x))


def _fill_by_loops(x, mask, iters):
    """fast_fmm pixel by pixel: each round, every masked pixel with a known 3x3 neighbour takes their mean."""
    out = torch.where(mask.bool(), x, 0.0).clone()
    known = mask[0, 0].bool().clone()
    H, W = known.shape
    for _ in range(iters):
        new_vals, new_known = out.clone(), known.clone()
        for i in range(H):
            for j in range(W):
                if known[i, j]:
                    continue
                nb = [(r, c) for r in range(i - 1, i + 2) for c in range(j - 1, j + 2)
                      if 0 <= r < H and 0 <= c < W and known[r, c]]  # fmt: skip
                if nb:
                    new_vals[0, :, i, j] = torch.stack([out[0, :, r, c] for r, c in nb]).mean(0)
                    new_known[i, j] = True
        out, known = new_vals, new_known
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), iters=st.integers(0, 4), hidden=st.floats(0.2, 1.0))
def test_neighbour_fill_is_the_reference_fast_fmm(seed, iters, hidden):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, 6, 7, generator=g, dtype=torch.float64)
    mask = (torch.rand(1, 1, 6, 7, generator=g) >= hidden).double()
    torch.testing.assert_close(neighbour_fill(x, mask, iters), _fill_by_loops(x, mask, iters))


def test_neighbour_fill_small_cases():
    row = torch.tensor([[[[2.0, 7.0, 4.0]]]])
    torch.testing.assert_close(neighbour_fill(row, torch.tensor([[[[1.0, 0, 1]]]]), 1), torch.tensor([[[[2.0, 3, 4]]]]))
    far = torch.tensor([[[[5.0, 9, 9, 9]]]])
    m = torch.tensor([[[[1.0, 0, 0, 0]]]])
    torch.testing.assert_close(neighbour_fill(far, m, 1), torch.tensor([[[[5.0, 5, 0, 0]]]]))  # one ring per round
    torch.testing.assert_close(neighbour_fill(far, m, 3), torch.tensor([[[[5.0, 5, 5, 5]]]]))


def test_fill_baselines_paint_the_masked_pixels():
    x = torch.ones(1, 1, 2, 2)
    assert fill(x, torch.tensor([[True, False], [False, True]]), 0.5).flatten().tolist() == [1, 0.5, 0.5, 1]


@pytest.mark.parametrize(
    "call,err,msg",
    [
        (lambda: LayerMasking(nn.Conv2d(1, 1, 3)), TypeError, "nn.Sequential"),
        (
            lambda: LayerMasking(nn.Sequential(nn.Upsample(scale_factor=2)))(torch.ones(1, 1, 4, 4), torch.ones(4, 4)),
            ValueError,
            "Upsample",
        ),  # fmt: skip
        (lambda: CNN(torch.ones(2, 2, 9, 9), torch.ones(3, 9, 9)), ValueError, "mask must be"),
        (lambda: CNN(torch.ones(2, 2, 9, 9), torch.full((9, 9), 0.5)), ValueError, "only 0 and 1"),
        (lambda: CNN(torch.ones(2, 9, 9), torch.ones(9, 9)), ValueError, "x must be images"),
        (lambda: CNN(torch.ones(1, 2, 9, 9), [[1]]), TypeError, "mask must be a tensor"),
    ],
)
def test_bad_arguments(call, err, msg):
    with pytest.raises(err, match=msg):
        call()
