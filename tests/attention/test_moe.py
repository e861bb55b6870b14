"""MoE routing as a mask over experts, against exact oracles: the dense mixture restricted to the routed pairs,
Hugging Face's Mixtral block and load-balancing loss, and the equations of Switch (Eq. 3-6), ST-MoE (Eq. 5) and
expert choice (Zhou et al. 2022, Eq. 1)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from masklab.attention.moe import (
    ROUTER,
    MoE,
    capacity,
    dense_mixture,
    expert_choice,
    load_balancing_loss,
    router_z_loss,
    sparse_mixture,
    top_k,
)

D = 6


def _experts(E: int, seed: int) -> nn.ModuleList:
    g = torch.Generator().manual_seed(seed)
    experts = nn.ModuleList(nn.Sequential(nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, D)) for _ in range(E))
    with torch.no_grad():
        for p in experts.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return experts.double()


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 24),
    E=st.integers(1, 6),
    k=st.integers(1, 6),
    cf=st.sampled_from([0.0, 0.5, 1.0, 1.25, 2.0]),
    router=st.sampled_from(ROUTER.names()),
    seed=st.integers(0, 2**16),
)
def test_sparse_output_is_the_dense_mixture_restricted_to_the_routed_pairs(T, E, k, cf, router, seed):
    k = min(k, E)
    if router == "expert-choice" and cf == 0:
        cf = 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=g, dtype=torch.float64)
    logits = torch.randn(T, E, generator=g, dtype=torch.float64)
    r = ROUTER.get(router)(logits, k, cf)
    experts = _experts(E, seed)
    every = torch.stack([expert(x) for expert in experts], 1)  # (T, E, D): every expert on every token
    want = (r.gates * r.mask)[..., None].to(x.dtype) * every
    torch.testing.assert_close(sparse_mixture(x, experts, r), want.sum(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dense_mixture(x, experts, r.gates), want.sum(1), rtol=1e-12, atol=1e-12)
    assert (sparse_mixture(x, experts, r)[r.dropped] == 0).all()  # a dropped token: zero, the residual carries it
    assert (r.gates[~r.mask] == 0).all() and r.mask.le(r.chosen).all()
    assert (r.load <= capacity(T, E, k, cf)).all()


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 30), E=st.integers(1, 6), k=st.integers(1, 6), cf=st.sampled_from([0.5, 1.0, 1.25]),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_token_choice_keeps_first_come_first_served_up_to_capacity(T, E, k, cf, seed):
    """Switch Eq. 3 / GShard Alg. 1: an expert's kept pairs are the first C of its queue, where all first
    choices come in token order before any second choice."""
    k = min(k, E)
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(seed))
    r = top_k(logits, k, cf)
    C = capacity(T, E, k, cf)
    order = logits.softmax(-1).topk(k, -1).indices  # (T, k)
    for e in range(E):
        queue = [t for s in range(k) for t in range(T) if order[t, s] == e]
        assert r.chosen[:, e].sum() == len(queue)
        assert sorted(queue[:C]) == r.mask[:, e].nonzero().squeeze(1).tolist()


def test_top_k_gates_are_switch_probabilities_or_renormalised_as_mixtral():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
    p = logits.softmax(-1)
    one = top_k(logits, 1, 0.0)
    torch.testing.assert_close(one.gates, torch.tensor([[p[0, 0], 0, 0], [0, p[1, 1], 0]]))
    two = top_k(logits, 2, 0.0)
    want = torch.stack([p[0] * torch.tensor([1.0, 0, 1]), p[1] * torch.tensor([1.0, 1, 0])])
    torch.testing.assert_close(two.gates, want / want.sum(-1, keepdim=True))
    torch.testing.assert_close(top_k(logits, 2, 0.0, renormalize=False).gates, want)


def test_capacity_is_switch_eq_3():
    assert capacity(tokens=64, experts=4, k=1, capacity_factor=1.0) == 16
    assert capacity(64, 4, 1, 1.25) == 20
    assert capacity(64, 8, 2, 1.25) == 20  # ceil(1.25 * 2 * 64 / 8)
    assert capacity(10, 3, 1, 1.0) == 4  # ceil
    assert capacity(10, 2, 2, 0.0) == 10 and capacity(4, 1, 1, 3.0) == 4  # no limit / at most every token


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 30), E=st.integers(1, 6), k=st.integers(1, 3), cf=st.sampled_from([0.5, 1.0, 2.0]),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_expert_choice_takes_each_experts_top_c_tokens(T, E, k, cf, seed):
    """Zhou et al. Eq. 1: I = TopK(S^T, C); G = S at the chosen pairs; every expert exactly full."""
    k = min(k, E)
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = expert_choice(logits, k, cf)
    S = logits.softmax(-1)
    C = capacity(T, E, k, cf)
    assert (r.load == C).all()
    torch.testing.assert_close(r.gates, S * r.mask)
    for e in range(E):
        if C < T:
            assert S[r.mask[:, e], e].min() >= S[~r.mask[:, e], e].max()


def test_load_balancing_loss_is_switch_eq_4_and_k_times_hugging_face():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    g = torch.Generator().manual_seed(0)
    for k in (1, 2, 3):
        logits = torch.randn(50, 5, generator=g, dtype=torch.float64)
        r = top_k(logits, k, 1.0)
        f = r.chosen.double().sum(0) / (k * 50)  # share of the k*T choices per expert (before drops)
        P = logits.softmax(-1).mean(0)
        torch.testing.assert_close(load_balancing_loss(r), 5 * (f * P).sum())
        hf = load_balancing_loss_func((logits,), num_experts=5, top_k=k)
        torch.testing.assert_close(k * load_balancing_loss(r), hf.to(torch.float64), rtol=1e-6, atol=1e-6)
    balanced = top_k(torch.eye(4).repeat(2, 1) * 1e-3, 1, 0.0)  # near-uniform probabilities, 2 tokens per expert
    assert load_balancing_loss(balanced).item() == pytest.approx(1.0, abs=1e-6)  # Switch: 1 when balanced
    collapsed = top_k(torch.tensor([[20.0, 0, 0, 0]]).repeat(8, 1), 1, 0.0)  # every token to expert 0
    assert load_balancing_loss(collapsed).item() == pytest.approx(4.0, abs=1e-6)  # E when all on one expert


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 20), E=st.integers(1, 8), scale=st.floats(0.1, 30), seed=st.integers(0, 2**16))
def test_router_z_loss_is_st_moe_eq_5(T, E, scale, seed):
    logits = scale * torch.randn(T, E, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    want = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.tolist()) / T
    assert router_z_loss(top_k(logits, 1, 0.0)).item() == pytest.approx(want, rel=1e-9)


def test_moe_layer_equals_hugging_face_mixtral_block():
    """With Mixtral's routing (top-2, renormalised, no capacity) the layer is Mixtral's sparse MoE block."""
    from transformers import MixtralConfig
    from transformers.models.llama.modeling_llama import LlamaMLP
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    torch.manual_seed(0)  # weight init of the two toy layers only
    cfg = MixtralConfig(hidden_size=8, intermediate_size=16, num_local_experts=4, num_experts_per_tok=2)
    cfg.mlp_bias = False  # the Llama MLP's field, for our experts
    ref = MixtralSparseMoeBlock(cfg).eval()
    ours = MoE(8, [LlamaMLP(cfg) for _ in range(4)], k=2, routing="top-k", capacity_factor=0.0)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
        ours.router.weight.copy_(ref.gate.weight)
        for e, expert in enumerate(ours.experts):
            gate, up = ref.experts.gate_up_proj[e].chunk(2, dim=0)
            expert.gate_proj.weight.copy_(gate)
            expert.up_proj.weight.copy_(up)
            expert.down_proj.weight.copy_(ref.experts.down_proj[e])
    x = torch.randn(3, 7, 8)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)
    assert ours.stats["load"].sum() == 2 * 21 and ours.stats["dropped"] == 0


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda: top_k(torch.zeros(4, 3), 4, 1.0), "k must be an int in \\[1, 3\\]"),
        (lambda: top_k(torch.zeros(4, 3), 0, 1.0), "k must be"),
        (lambda: top_k(torch.zeros(4, 3), 1, -1.0), "capacity_factor must be >= 0"),
        (lambda: top_k(torch.zeros(4), 1, 1.0), "logits must be a float tensor"),
        (lambda: top_k(torch.zeros(4, 3, dtype=torch.long), 1, 1.0), "logits must be a float tensor"),
        (lambda: expert_choice(torch.zeros(4, 3), 1, 0.0), "capacity_factor must be > 0"),
        (lambda: MoE(4, [nn.Linear(4, 4)] * 2, k=3), "k must be an int in \\[1, 2\\]"),
        (lambda: MoE(4, [nn.Linear(4, 4)], routing="hash"), "unknown router 'hash'"),
        (lambda: MoE(4, []), "experts must hold at least one"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
