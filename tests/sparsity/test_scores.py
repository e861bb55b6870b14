"""Wanda against hand-computed cases, calibration hooks, SparseGPT against its closed-form special case."""

import pytest
import torch
from torch import nn

from masklab.sparsity import sparsify_
from masklab.sparsity.nm import is_nm, nm_mask
from masklab.sparsity.scores import collect_input_stats, magnitude, sparsegpt_prune, wanda


def _net(weight):
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return nn.Sequential(lin)


def test_wanda_equals_abs_weight_times_input_column_norms_by_hand():
    # X has 2 tokens; column norms: sqrt(3^2+4^2)=5, 0, sqrt(0+2^2)=2, sqrt(1+0)=1
    X = torch.tensor([[3.0, 0.0, 0.0, 1.0], [4.0, 0.0, 2.0, 0.0]])
    W = torch.tensor([[1.0, -2.0, 3.0, -4.0], [-0.5, 10.0, 0.1, 1.0]])
    net = _net(W)
    stats = collect_input_stats(net, {"0": net[0]}, X)
    assert torch.allclose(stats["0"].norm, torch.tensor([5.0, 0.0, 2.0, 1.0]))
    assert stats["0"].count == 2
    score = wanda(W, stats["0"].norm)
    assert torch.allclose(score, torch.tensor([[5.0, 0.0, 6.0, 4.0], [2.5, 0.0, 0.2, 1.0]]))
    # 2:4 per row keeps the two largest scores; magnitude would keep different weights
    expected = torch.tensor([[True, False, True, False], [True, False, False, True]])
    assert torch.equal(nm_mask(W, 2, 4, scores=score), expected)
    assert not torch.equal(nm_mask(W, 2, 4, scores=magnitude(W)), expected)
    report = sparsify_(net, "wanda", 2, 4, calib=X, filter=lambda n, m: isinstance(m, nn.Linear))
    assert torch.equal(report.masks["0"], expected)
    assert torch.equal(net[0].weight, W * expected)


def test_norms_pool_tokens_of_3d_inputs_and_all_batches():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 8, generator=g), torch.randn(3, 4, 8, generator=g)
    net = _net(torch.randn(4, 8, generator=g))
    stats = collect_input_stats(net, {"0": net[0]}, [a, b])["0"]
    tokens = torch.cat([a.reshape(-1, 8), b.reshape(-1, 8)])
    assert stats.count == 22
    assert torch.allclose(stats.norm, tokens.norm(dim=0), rtol=1e-5)


def test_dict_batches_are_passed_as_keyword_arguments():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, input_ids, attention_mask):
            return self.proj(input_ids * attention_mask)

    model = KW()
    batch = {"input_ids": torch.ones(2, 3, 4), "attention_mask": torch.zeros(2, 3, 1)}
    stats = collect_input_stats(model, {"proj": model.proj}, batch)
    assert stats["proj"].norm.sum() == 0


def test_wanda_shape_mismatch_and_empty_calibration_raise():
    with pytest.raises(ValueError, match="input_norm"):
        wanda(torch.ones(2, 4), torch.ones(3))
    net = _net(torch.ones(2, 4))
    with pytest.raises(ValueError, match="calibration data is empty"):
        collect_input_stats(net, {"0": net[0]}, [])


def test_sparsegpt_with_isotropic_inputs_is_magnitude_pruning_without_update():
    # H = 2 I: the inverse Hessian is diagonal, so the OBS saliency is w^2 and no error is propagated
    W = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    new, keep = sparsegpt_prune(W, 2.0 * torch.eye(16), 2, 4, blocksize=8)
    assert torch.equal(keep, nm_mask(W, 2, 4))
    assert torch.allclose(new, W * keep, atol=1e-6)


def test_sparsegpt_reconstructs_layer_output_better_than_masking_alone():
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(32, 32, generator=g)
    X = torch.randn(512, 32, generator=g) @ mix  # correlated features
    W = torch.randn(8, 32, generator=g)
    H = 2 * X.T @ X / X.shape[0]
    new, keep = sparsegpt_prune(W, H, 2, 4)
    assert is_nm(keep, 2, 4) and torch.equal(new == 0, ~keep | (W == 0))
    err = lambda w: (X @ (w - W).T).pow(2).sum()  # noqa: E731
    wanda_keep = nm_mask(W, 2, 4, scores=wanda(W, X.norm(dim=0)))
    assert err(new) < err(W * wanda_keep)
    assert err(new) < err(W * nm_mask(W, 2, 4))
