"""Regularized mask tuning (R-AMT) against the equations of wuw2019/R-AMT code/trainers/masktuning.py:
straight-through gradients, pre-selection by change ratio, the L2 term on the scores, the KL with temperature and
fusion, gradient dropout with partial drop, and toys with a known answer."""

import pytest
import torch
from torch import nn

from masklab.sparsity.tuning import (
    BinaryMask,
    MaskTuningConfig,
    change_ratios,
    grad_dropout,
    kl_loss,
    kl_loss_fn,
    preselect,
    score_l2,
    train,
)


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

    cfg = MaskTuningConfig(steps=150, lr=0.1, init=1.0, threshold=0.5, reg=0.0, grad_dropout=False)
    masks = train(lin, {"lin": lin}, task, batches, cfg)
    assert torch.equal(masks["lin"], ~bad)
    assert torch.equal(lin.weight, w_good)


def test_gradient_dropout_slows_forgetting():
    # a few-shot task that disagrees with the pretrained classifier: the task gradient that fights the KL to the
    # unmasked model is dropped, so fewer weights flip than under plain mask tuning
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(8, 16, generator=g))
    X = torch.randn(128, 16, generator=g)
    y = (X @ torch.randn(8, 16, generator=g).T).argmax(-1)  # another classifier's labels
    batches = [(X[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]

    def task(model, batch):
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    pruned = {}
    for gd in (False, True):
        net = nn.Linear(16, 8, bias=False)
        net.load_state_dict(lin.state_dict())
        kl = kl_loss_fn(net)
        cfg = MaskTuningConfig(steps=60, lr=0.05, init=1.0, threshold=0.5, reg=0.0, grad_dropout=gd)
        masks = train(net, {"w": net}, task, batches, cfg, reg_loss=lambda m, b, kl=kl: kl(m, b[0]))
        pruned[gd] = int((~masks["w"]).sum())
    assert pruned[True] < pruned[False]


def test_partial_drop_scales_dropped_gradients_by_one_minus_lambda():
    # Eq. 7: g' = ((1 - lambda) + lambda 1[P > U]) g; with r = -g/2, P = 2/3
    g = torch.ones(20000)
    out = grad_dropout(g, -0.5 * g, torch.Generator().manual_seed(0), drop=0.3)
    assert torch.allclose(out.unique(), torch.tensor([0.7, 1.0]))
    assert (out == 1.0).float().mean().item() == pytest.approx(2 / 3, abs=0.015)
    assert torch.equal(grad_dropout(g, -0.5 * g, torch.Generator().manual_seed(0), drop=0.0), g)


def test_score_l2_is_the_sum_of_layer_norms():
    masks = {"a": BinaryMask((2, 2), init=3.0, threshold=0.0), "b": BinaryMask((4,), init=1.0, threshold=0.0)}
    assert score_l2(masks).item() == pytest.approx(3.0 * 2 + 1.0 * 2)  # ||M||_2, not ||M||_2^2


def test_score_l2_alone_shrinks_every_mask_and_reg_zero_keeps_them():
    # with no task signal the only gradient is reg * M / ||M|| > 0: every score falls below the threshold
    lin = nn.Linear(6, 4, bias=False)
    batches = [torch.ones(2, 6)]

    def no_task(model, xb):
        return 0.0 * model(xb).sum()

    for reg, kept in ((1e-4, 0), (0.0, 24)):
        net = nn.Linear(6, 4, bias=False)
        net.load_state_dict(lin.state_dict())
        cfg = MaskTuningConfig(steps=30, lr=1e-3, reg=reg, grad_dropout=False)
        assert int(train(net, {"w": net}, no_task, batches, cfg)["w"].sum()) == kept


def test_kl_loss_is_t2_times_cross_entropy_to_the_fused_teacher():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for T, alpha in ((1.0, 1.0), (2.0, 1.0), (4.0, 0.3)):
        fused = alpha * t + (1 - alpha) * s
        p = torch.distributions.Categorical(logits=fused / T)
        q = torch.distributions.Categorical(logits=s / T)
        want = T**2 * (torch.distributions.kl_divergence(p, q) + p.entropy()).mean()
        assert kl_loss(s, t, T, alpha).item() == pytest.approx(want.item(), rel=1e-5)


def test_kl_loss_gradient_flows_through_the_fused_teacher():
    # KLLoss does not detach the student inside the fused teacher: at alpha = 0 the loss is T^2 H(softmax(s/T)),
    # whose gradient is not 0 (a detached target would give exactly 0 there)
    s = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (got,) = torch.autograd.grad(kl_loss(s, torch.zeros(3, 5), 2.0, 0.0), s)
    s2 = s.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(4.0 * torch.distributions.Categorical(logits=s2 / 2.0).entropy().mean(), s2)
    assert torch.allclose(got, want, atol=1e-6) and want.abs().max() > 1e-3


class _TwoPaths(nn.Module):
    """y = A x + B x + 0 * C x: A and B get the same gradient; C gets none."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a, self.b, self.c = (nn.Linear(4, 3, bias=False) for _ in range(3))
        with torch.no_grad():
            for lin, scale in ((self.a, 1.0), (self.b, 100.0), (self.c, 1.0)):
                lin.weight.copy_(scale * torch.randn(3, 4, generator=g))

    def forward(self, x):
        return self.a(x) + self.b(x) + 0.0 * self.c(x)


def test_change_ratio_is_the_relative_change_and_weights_are_restored():
    model = _TwoPaths()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    batches = [(x, torch.zeros(8, 3))]

    def loss_fn(m, b):
        return (m(b[0]) - b[1]).pow(2).mean()

    mods = {"a": model.a, "b": model.b, "c": model.c}
    ratios = change_ratios(model, mods, loss_fn, batches, steps=5, lr=1e-2)
    # SGD with identical gradients moves A and B by the same delta: the ratios differ by ||B|| / ||A|| exactly
    norm = {k: before[f"{k}.weight"].norm().item() for k in "ab"}
    assert ratios["a"] / ratios["b"] == pytest.approx(norm["b"] / norm["a"], rel=1e-4)
    assert ratios["c"] == 0.0
    assert list(preselect(model, mods, loss_fn, batches, top=1, steps=5, lr=1e-2)) == ["a"]
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.requires_grad


def test_config_must_start_unmasked_and_bad_values_raise():
    with pytest.raises(ValueError, match="must exceed threshold"):
        MaskTuningConfig(init=0.4, threshold=0.5)
    with pytest.raises(ValueError, match="drop and fuse_alpha"):
        MaskTuningConfig(drop=1.5)
    with pytest.raises(ValueError, match="temperature"):
        MaskTuningConfig(temperature=0.0)
    with pytest.raises(ValueError, match="top must be in"):
        preselect(nn.Linear(2, 2), {"w": nn.Linear(2, 2)}, lambda m, b: m(b).sum(), [torch.ones(1, 2)], top=2)
