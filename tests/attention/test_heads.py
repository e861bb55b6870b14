"""Talking Heads tools against exact oracles: a head mask equals zeroing the head's columns of W_O (four model
families); OV and QK equal what the model's own attention computes at RoPE offset 0; the components' shares add
up to Elhage et al.'s composition score; removing every direction a head writes equals masking the head."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    ModernBertConfig,
    ModernBertModel,
)

from masklab.attention.heads import (
    channels,
    component_scores,
    composition_score,
    head_circuits,
    head_mask,
    output_projections,
    remove_directions,
)


def _llama(kv_heads=1):
    torch.manual_seed(0)  # weight init of the toy model only
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=kv_heads, intermediate_size=24)  # fmt: skip
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)  # a gain that must be folded in
    return model


FAMILIES = {
    "llama": lambda: _llama(kv_heads=2),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=4, n_positions=32)),
    "bert": lambda: BertModel(
        BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24)
    ),  # fmt: skip
    "modernbert": lambda: ModernBertModel(
        ModernBertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=24,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
            global_attn_every_n_layers=1,
        )
    ),  # fmt: skip
}


def _out(model, ids):
    out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
def test_head_mask_equals_zeroing_the_heads_columns_of_w_o(family):
    torch.manual_seed(0)  # weight init of the toy model only
    model = FAMILIES[family]().eval()
    ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    projections = output_projections(model)
    keep = torch.rand(len(projections), 4, generator=torch.Generator().manual_seed(2)) > 0.4
    with head_mask(model, keep):
        masked = _out(model, ids)
    plain = _out(model, ids)  # the hooks are gone
    with torch.no_grad():
        for proj, row in zip(projections, keep, strict=True):
            per_head = torch.repeat_interleave(row.float(), proj.weight.shape[1 if family != "gpt2" else 0] // 4)
            if family == "gpt2":  # Conv1D: weight (in, out)
                proj.weight.mul_(per_head[:, None])
            else:
                proj.weight.mul_(per_head[None, :])
    torch.testing.assert_close(masked, _out(model, ids), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(masked, plain)


def _rope_free(model, x):
    """The layer's rotary (cos, sin) at position 0 for every token: no rotation."""
    return model.model.rotary_emb(x, torch.zeros(x.shape[:2], dtype=torch.long))


def test_ov_is_what_a_head_writes_for_a_lone_token():
    """One token attends to itself only, so head h's attention output is OV_h (x / rms(x))."""
    model = _llama()
    c = head_circuits(model)
    x = torch.randn(1, 1, 16, generator=torch.Generator().manual_seed(3))
    x_hat = x / x.pow(2).mean(-1, keepdim=True).add(model.config.rms_norm_eps).sqrt()
    layer = model.model.layers[1]
    for h in range(4):
        keep = torch.zeros(3, 4, dtype=torch.bool)
        keep[1, h] = True
        with head_mask(model, keep), torch.no_grad():
            out, _ = layer.self_attn(layer.input_layernorm(x), position_embeddings=_rope_free(model, x))
        torch.testing.assert_close(out[0, 0].double(), c.ov[1, h] @ x_hat[0, 0].double(), rtol=1e-5, atol=1e-6)


def test_qk_is_the_models_attention_score_at_offset_0():
    """Two tokens at position 0, no mask: log(w_1 / w_2) of query 2 = scale * x_2^T QK (x_1 - x_2)."""
    model = _llama()
    c = head_circuits(model)
    x = torch.randn(1, 2, 16, generator=torch.Generator().manual_seed(4))
    x_hat = (x / x.pow(2).mean(-1, keepdim=True).add(model.config.rms_norm_eps).sqrt())[0].double()
    layer = model.model.layers[2]
    with torch.no_grad():
        _, w = layer.self_attn(layer.input_layernorm(x), position_embeddings=_rope_free(model, x))
    got = (w[0, :, 1, 0].log() - w[0, :, 1, 1].log()).double() / layer.self_attn.scaling  # (H,)
    want = torch.stack([x_hat[1] @ c.qk[2, h] @ (x_hat[0] - x_hat[1]) for h in range(4)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(d=st.integers(2, 8), rank=st.integers(1, 8), kind=st.sampled_from(["q", "k", "v"]), seed=st.integers(0, 999))
def test_component_shares_add_up_to_the_composition_score(d, rank, kind, seed):
    g = torch.Generator().manual_seed(seed)
    rank = min(rank, d)
    A = torch.randn(d, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    B = torch.randn(d, d, generator=g, dtype=torch.float64)
    comp = component_scores(A, B, kind)
    torch.testing.assert_close(comp.share.sum(), composition_score(A, B, kind).square())
    _, _, Vh = torch.linalg.svd(A)
    for i in range(rank):  # each score is the composition score of the rank-1 matrix s_i u_i v_i^T itself
        one = comp.sigma[i] * comp.u[:, i : i + 1] @ Vh[i : i + 1]
        torch.testing.assert_close(comp.scores[i], composition_score(one, B, kind))


def test_composition_score_kinds_follow_elhage_et_al():
    A, B = torch.randn(5, 5, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    norm = torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B)
    torch.testing.assert_close(composition_score(A, B, "q"), torch.linalg.matrix_norm(B.T @ A) / norm)
    torch.testing.assert_close(composition_score(A, B, "k"), torch.linalg.matrix_norm(B @ A) / norm)
    torch.testing.assert_close(composition_score(A, B, "v"), torch.linalg.matrix_norm(B @ A) / norm)


def test_removing_every_direction_a_head_writes_is_masking_it():
    model = _llama()
    ids = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(5))
    U = torch.linalg.svd(head_circuits(model).ov[0, 2]).U[:, :4]  # the head's whole output span (d_head = 4)
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[0, 2] = False
    with head_mask(model, keep):
        masked = _out(model, ids)
    before = model.model.layers[0].self_attn.o_proj.weight.clone()
    with remove_directions(model, 0, 2, U):
        removed = _out(model, ids)
        assert torch.linalg.matrix_norm(U.T.float() @ model.model.layers[0].self_attn.o_proj.weight[:, 8:12]) < 1e-5
    torch.testing.assert_close(removed, masked, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.model.layers[0].self_attn.o_proj.weight, before)  # restored


def test_channels_find_a_planted_channel():
    """Writer (0, 1) writes only along e_0 and reader (2, 3)'s keys read only e_0: the top K-channel."""
    model = _llama(kv_heads=4)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.05)
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
        wo = model.model.layers[0].self_attn.o_proj.weight  # (16, 4 heads * 4)
        wo[:, 4:8] = 0
        wo[0, 4:8] = 1.0  # head 1 writes e_0
        model.model.layers[0].self_attn.v_proj.weight[4:8] = torch.eye(4, 16)
        wk = model.model.layers[2].self_attn.k_proj.weight
        wk[12:16] = 0
        wk[12:16, 0] = 1.0  # head 3's keys read e_0
        model.model.layers[2].self_attn.q_proj.weight[12:16] = torch.eye(4, 16)
    best = channels(model, kind="k", rank=1, top=3)[0]
    assert (best.writer, best.reader) == ((0, 1), (2, 3))
    assert abs(best.directions[0, 0].abs() - 1) < 1e-5  # the direction is e_0


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda m: head_mask(m, torch.ones(2, 4)).__enter__(), "keep must be a tensor \\(layers, heads\\)"),
        (lambda m: head_circuits(torch.nn.Linear(2, 2)), "Llama-family"),
        (lambda m: output_projections(torch.nn.Linear(2, 2)), "no attention output projection"),
        (lambda m: composition_score(torch.eye(2), torch.eye(2), "o"), "kind must be one of"),
        (lambda m: component_scores(torch.eye(3), torch.eye(3), "k", rank=4), "rank must be in \\[1, 3\\]"),
        (lambda m: remove_directions(m, 5, 0, torch.eye(16)[:, :1]).__enter__(), "layer must be in"),
        (lambda m: remove_directions(m, 0, 0, torch.eye(8)[:, :1]).__enter__(), "directions must be \\(d=16"),
    ],
)
def test_bad_arguments(call, msg):
    with pytest.raises(ValueError, match=msg):
        call(_llama())
