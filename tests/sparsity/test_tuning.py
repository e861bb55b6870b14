"""Regularized mask tuning: straight-through gradients, the gradient-dropout rule, a toy with known answer."""

import pytest
import torch
from torch import nn

from masklab.sparsity.tuning import BinaryMask, MaskTuningConfig, grad_dropout, train


def test_straight_through_gradient_is_dloss_dmaskedweight_times_weight():
    W = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    bm = BinaryMask(W.shape, threshold=0.5, init=1.0)
    with torch.no_grad():
        bm.scores[0, 0] = 0.2  # one weight masked
    weff = bm(W)
    assert weff[0, 0] == 0 and torch.equal(weff[1:], W[1:])
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    loss = (x @ weff.T).pow(2).sum()
    (g_scores,) = torch.autograd.grad(loss, bm.scores)
    g_weff = 2 * (x @ weff.T).T @ x  # dL/dW_eff for L = ||x W_eff^T||^2
    assert torch.allclose(g_scores, g_weff * W, rtol=1e-5, atol=1e-5)


def test_grad_dropout_keeps_agreeing_and_unopposed_gradients():
    g = torch.tensor([1.0, -2.0, 3.0, 0.5])
    assert torch.equal(grad_dropout(g, torch.tensor([0.5, -1.0, 0.0, 9.0])), g)


def test_grad_dropout_drops_gradients_the_regulariser_overwhelms():
    g = torch.full((1000,), 1e-3)
    out = grad_dropout(g, torch.full((1000,), -1e3), torch.Generator().manual_seed(0))
    assert (out == 0).float().mean() > 0.99


def test_grad_dropout_keep_rate_matches_the_agreement_probability():
    # r = -g/2: P = 1/2 (1 + (g/2)/(3g/2)) = 2/3
    g = torch.ones(20000)
    out = grad_dropout(g, -0.5 * g, torch.Generator().manual_seed(0))
    assert (out != 0).float().mean().item() == pytest.approx(2 / 3, abs=0.015)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_mask_tuning_removes_the_harmful_weights_of_a_toy_layer():
    # target = W_good x; the frozen layer holds W_good + W_bad on disjoint entries: the best binary mask
    # drops exactly the W_bad entries
    g = torch.Generator().manual_seed(0)
    bad = torch.rand(6, 12, generator=g) < 0.2
    w_good = torch.randn(6, 12, generator=g) * ~bad
    w_bad = 2 * torch.randn(6, 12, generator=g).sign() * bad
    lin = nn.Linear(12, 6, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w_good + w_bad)
    X = torch.randn(256, 12, generator=g)
    batches = [X[i : i + 32] for i in range(0, 256, 32)]

    def task(model, xb):
        return (model(xb) - xb @ w_good.T).pow(2).mean()

    cfg = MaskTuningConfig(steps=150, lr=0.05, grad_dropout=False)
    masks = train(lin, {"lin": lin}, task, batches, cfg)
    assert torch.equal(masks["lin"], ~bad)
    assert torch.equal(lin.weight, w_good)


def test_gradient_dropout_slows_forgetting():
    # With the KL-to-original regulariser the task gradient that fights it is dropped, so fewer weights flip
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(8, 16, generator=g))
    X = torch.randn(128, 16, generator=g)
    target = torch.randn(8, 16, generator=g)
    batches = [X[i : i + 32] for i in range(0, 128, 32)]

    def task(model, xb):
        return (model(xb) - xb @ target.T).pow(2).mean()

    pruned = {}
    for gd in (False, True):
        net = nn.Linear(16, 8, bias=False)
        net.load_state_dict(lin.state_dict())
        cfg = MaskTuningConfig(steps=60, lr=0.05, grad_dropout=gd)
        pruned[gd] = int((~train(net, {"w": net}, task, batches, cfg)["w"]).sum())
    assert pruned[True] < pruned[False]


def test_config_must_start_unmasked():
    with pytest.raises(ValueError, match="must exceed threshold"):
        MaskTuningConfig(init=0.4, threshold=0.5)
