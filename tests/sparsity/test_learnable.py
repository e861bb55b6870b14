"""MaskLLM: the learnable mask finds a known best 2:4 mask; keyed init, prior, regulariser and schedules as in
NVlabs/MaskLLM (differentiable_mask.py, pretrain_maskllm.py), export and frozen weights."""

import pytest
import torch
from torch import nn

from masklab.sparsity.learnable import (
    LearnableNMMask,
    MaskLLMConfig,
    attach,
    export_,
    reg_weight,
    set_schedule,
    sparse_weight_reg,
    train_masks,
)
from masklab.sparsity.nm import is_nm, nm_mask, nm_patterns


def _toy(seed=0, rows=16, cols=32):
    """A linear layer whose best 2:4 mask is a random pattern M*, not the magnitude one: targets are
    produced by W * M*, so the loss is exactly 0 at M* and positive for any other mask of a generic W."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cols, generator=g)
    m_star = nm_patterns(2, 4)[torch.randint(0, 6, (rows, cols // 4), generator=g)].reshape(rows, cols).bool()
    X = torch.randn(512, cols, generator=g)
    lin = nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        lin.weight.copy_(W)
    batches = [X[i : i + 64] for i in range(0, 512, 64)]
    target = W * m_star

    def loss_fn(model, xb):
        return (model(xb) - xb @ target.T).pow(2).mean()

    return lin, W, m_star, batches, loss_fn


def test_learnable_mask_converges_to_the_known_best_mask():
    lin, W, m_star, batches, loss_fn = _toy()
    assert (nm_mask(W) != m_star).sum() > 100  # magnitude pruning does not find it
    cfg = MaskLLMConfig(steps=200, lr=0.05, prior_strength=0.0, reg=0.0)
    masks = train_masks(lin, {"lin": lin}, loss_fn, batches, cfg)
    assert torch.equal(masks["lin"], m_star)
    assert torch.equal(lin.weight, W * m_star)  # frozen weights: export is exactly W * mask
    assert not hasattr(lin, "parametrizations") and lin.weight.requires_grad


def _logits(cfg, modules, priors=None):
    masks = attach(modules, cfg, priors)
    out = {name: mk.logits.detach().clone() for name, mk in masks.items()}
    export_(modules)
    return out


def test_logit_init_is_normal_001_keyed_on_seed_and_layer_name_only():
    # reference DifferentiableMask: gate ~ N(0, 0.01); here keyed on (seed, layer name), not on the global RNG
    cfg = MaskLLMConfig(seed=3)
    torch.manual_seed(1)
    both = _logits(cfg, {"a": nn.Linear(64, 32), "b": nn.Linear(64, 32)})
    torch.manual_seed(2)
    alone = _logits(cfg, {"b": nn.Linear(64, 32)})
    assert torch.equal(both["b"], alone["b"])  # neither the global RNG nor the other layers matter
    assert not torch.equal(both["a"], both["b"])
    assert not torch.equal(alone["b"], _logits(MaskLLMConfig(seed=4), {"b": nn.Linear(64, 32)})["b"])
    assert both["a"].std().item() == pytest.approx(0.01, rel=0.05)  # 32 * 16 * 6 = 3072 draws
    assert abs(both["a"].mean().item()) < 1e-3


def test_prior_adds_overlap_minus_one_times_std_times_strength():
    # reference init_diff_mask_from_prior: gate += (priors - 1) * gate.std() * strength; for 2:4 the prior's
    # own pattern gains strength * std, its complement loses as much, the 4 patterns sharing one weight stay
    lin = nn.Linear(32, 16)
    prior = nm_mask(lin.weight.detach())
    cfg = MaskLLMConfig(prior_strength=3.0)
    noise = _logits(cfg, {"lin": lin})["lin"]  # (16, 8, 6)
    shifted = _logits(cfg, {"lin": lin}, priors={"lin": prior})["lin"]
    groups = prior.reshape(16, 8, 1, 4).float()
    pats = nm_patterns(2, 4)  # (6, 4)
    same = (groups == pats).all(-1)  # (16, 8, 6): the prior's own pattern
    complement = (groups == 1 - pats).all(-1)
    expected = 3.0 * noise.std() * (same.float() - complement.float())
    assert same.sum(-1).eq(1).all() and complement.sum(-1).eq(1).all()
    assert torch.allclose(shifted - noise, expected, atol=1e-7)


def test_zero_lr_keeps_the_initial_argmax():
    lin, W, m_star, batches, loss_fn = _toy(seed=1)
    cfg = MaskLLMConfig(steps=1, lr=1e-12, prior_strength=3.0, reg=0.0)
    start = attach({"lin": lin}, cfg, priors={"lin": nm_mask(W)})["lin"].hard_mask()
    export_({"lin": lin})
    with torch.no_grad():
        lin.weight.copy_(W)
    masks = train_masks(lin, {"lin": lin}, loss_fn, batches, cfg, priors={"lin": nm_mask(W)})
    assert torch.equal(masks["lin"], start)
    assert (start == nm_mask(W)).float().mean() > 0.9  # the prior leads, the N(0, 0.01) noise moves a few groups


def test_sparse_weight_reg_is_the_unnormalised_sum_of_kept_squares():
    # reference sparse_weight_norm = (W.detach() * M~).pow(2).sum(), subtracted from the loss without any
    # normalisation; a weight scale of 10 must therefore scale it by 100
    lin = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        lin.weight.mul_(10.0)
    W = lin.weight.detach().clone()
    masks = attach({"lin": lin}, MaskLLMConfig())
    masks["lin"].eval()  # the hard (argmax) mask: a known M~
    hard = masks["lin"].hard_mask()
    reg = sparse_weight_reg({"lin": lin})
    assert reg.item() == pytest.approx(-(W[hard] ** 2).sum().item(), rel=1e-6)
    export_({"lin": lin})


def test_reg_weight_is_removed_linearly_over_training():
    cfg = MaskLLMConfig(steps=200, reg=1e-5)  # reference: weight_reg * (1 - iteration / train_iters)
    assert reg_weight(0, cfg) == 1e-5
    assert reg_weight(100, cfg) == pytest.approx(5e-6)
    assert reg_weight(199, cfg) == pytest.approx(1e-5 / 200)


def test_soft_mask_keeps_n_in_expectation_per_group_and_hard_mask_is_exact():
    mk = LearnableNMMask((8, 16), 2, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mk.logits.normal_(generator=torch.Generator().manual_seed(1))
    soft = mk.soft_mask()
    assert torch.allclose(soft.reshape(8, -1, 4).sum(-1), torch.full((8, 4), 2.0), atol=1e-5)
    assert ((soft >= 0) & (soft <= 1 + 1e-6)).all()
    assert is_nm(mk.hard_mask(), 2, 4)


def test_gumbel_noise_comes_from_the_given_generator_only():
    a = LearnableNMMask((4, 8), generator=torch.Generator().manual_seed(7))
    b = LearnableNMMask((4, 8), generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    sa = a.soft_mask()
    torch.manual_seed(456)
    assert torch.equal(sa, b.soft_mask())


def test_schedules_run_linearly_from_start_to_end():
    lin = nn.Linear(8, 4)
    cfg = MaskLLMConfig(steps=11, tau=(4.0, 0.05), kappa=(100.0, 500.0))
    masks = attach({"lin": lin}, cfg)
    assert set_schedule(masks, 0, cfg) == (4.0, 100.0)
    tau, kappa = set_schedule(masks, 5, cfg)
    assert tau == pytest.approx(2.025) and kappa == pytest.approx(300.0)
    assert set_schedule(masks, 10, cfg) == pytest.approx((0.05, 500.0))
    assert masks["lin"].tau == pytest.approx(0.05)
    export_({"lin": lin})


def test_bad_configs_and_shapes_raise():
    with pytest.raises(ValueError, match="n must be smaller"):
        MaskLLMConfig(n=4, m=4)
    with pytest.raises(ValueError, match="tau and kappa"):
        MaskLLMConfig(tau=(1.0, 0.0))
    with pytest.raises(ValueError, match="not divisible by m=4"):
        LearnableNMMask((4, 6))
    with pytest.raises(ValueError, match="prior shape"):
        LearnableNMMask((4, 8), prior=torch.ones(4, 4, dtype=torch.bool))
