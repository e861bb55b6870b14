"""Mask pooling and Mask-Adapter pooling."""

import pytest
import torch

from masklab.seg.pooling import MaskAdapter, activation_pool, mask_pool


def test_mask_pool_is_the_mean_under_the_mask():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 5, 6, 7, generator=g)
    m = torch.rand(2, 3, 6, 7, generator=g) > 0.5
    m[0, 2] = False  # empty mask
    out = mask_pool(f, m, eps=0.0 + 1e-12)
    for b in range(2):
        for q in range(3):
            want = f[b][:, m[b, q]].mean(1) if m[b, q].any() else torch.zeros(5)
            assert torch.allclose(out[b, q], want, atol=1e-5)


def test_masks_at_higher_resolution_are_resized():
    f = torch.arange(16.0).reshape(1, 1, 4, 4)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4, :] = 1  # top half at 2x resolution -> top two feature rows
    assert torch.allclose(mask_pool(f, m), f[0, 0, :2].mean().reshape(1, 1, 1), atol=1e-5)


def test_activation_pool_with_log_mask_equals_mask_pool():
    """Softmax of log(mask) is uniform over the mask, so Mask-Adapter pooling reduces to average pooling."""
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 4, 5, 5, generator=g)
    m = torch.rand(2, 3, 5, 5, generator=g) > 0.4
    m[..., 0, 0] = True
    acts = torch.log(m.float()).unsqueeze(2).expand(-1, -1, 6, -1, -1)
    assert torch.allclose(activation_pool(f, acts), mask_pool(f, m, eps=0), atol=1e-5)


def test_mask_adapter_shapes_and_gradients():
    ad = MaskAdapter(channels=8, hidden=16, maps=4)
    f = torch.randn(2, 8, 6, 6, requires_grad=True)
    m = torch.rand(2, 3, 12, 12) > 0.5
    out = ad(f, m)
    assert out.shape == (2, 3, 8)
    out.sum().backward()
    assert f.grad is not None and ad.to_maps.weight.grad is not None
    with pytest.raises(ValueError, match="batch"):
        ad(f, m[:1])
