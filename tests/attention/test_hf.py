"""masklab masks inside a transformers model: same logits as HF's own masks, and layer-wise bidirectionality
changes exactly the positions and layers it should ("Do Not (Always) Look Right")."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from masklab.attention import hf
from masklab.attention import mods as M

N_LAYERS = 4


@pytest.fixture(scope="module")
def model():
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (3, 12), generator=g)
    attn = torch.ones(3, 12, dtype=torch.long)
    attn[1, :4] = 0  # left padding
    attn[2, :1] = 0
    return ids, attn


def run(model, ids, attn, plan=..., **kw):
    with torch.no_grad():
        if plan is ...:
            hf.clear_masks(model)
        else:
            hf.use_masks(model, plan)
        out = model(ids, attention_mask=attn, output_hidden_states=True, **kw)
    hf.clear_masks(model)
    return out


def test_masklab_causal_gives_default_logits(model, batch):
    ids, attn = batch
    ref = run(model, ids, attn).logits
    real = attn.bool()
    for plan in (None, M.causal(), "causal"):
        got = run(model, ids, attn, plan).logits
        torch.testing.assert_close(got[real], ref[real], atol=1e-6, rtol=0)


def test_masklab_greedy_generation_matches_default(model):
    ids = torch.tensor([[5, 7, 9, 11]])
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=6, do_sample=False)
        hf.use_masks(model, M.causal())
        got = model.generate(ids, max_new_tokens=6, do_sample=False)  # KV cache: q_offset > 0
    hf.clear_masks(model)
    assert torch.equal(got, ref)


def test_all_layers_bidirectional_equals_hf_encoder_mode(model, batch):
    ids, attn = batch
    got = run(model, ids, attn, "layerwise:bidir=0-3").logits
    model.config.is_causal = False  # transformers' own switch to bidirectional masks
    try:
        ref = run(model, ids, attn).logits
    finally:
        model.config.is_causal = True
    real = attn.bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_layers_0_to_k_bidirectional_change_exactly_where_expected(model, batch, k):
    ids, attn = batch
    ids, attn = ids[:1], attn[:1]  # no padding: every position is compared
    causal = run(model, ids, attn).hidden_states
    bidir = run(model, ids, attn, "layerwise:bidir=0-3").hidden_states
    with torch.no_grad():
        hf.bidirectional_layers(model, range(k + 1))
        assert [i for i, m in hf.layer_masks(model).items() if m is not None] == list(range(k + 1))
        mixed = model(ids, attention_mask=attn, output_hidden_states=True).hidden_states
    hf.clear_masks(model)
    # hidden_states[i] is the input of layer i; layers 0..k see the whole sequence, so up to k+1 it equals the
    # all-bidirectional run, after it it differs from both
    torch.testing.assert_close(mixed[0], causal[0], atol=0, rtol=0)
    for i in range(1, k + 2):
        torch.testing.assert_close(mixed[i], bidir[i], atol=1e-6, rtol=0)
        # the last token sees every token in a causal layer too: after layer 0 only it is unchanged
        diff = (mixed[i] - causal[i]).abs().amax(-1)[0]
        if i == 1:
            assert diff[-1] < 1e-6 and bool((diff[:-1] > 1e-4).all())
    for i in range(k + 2, N_LAYERS + 1):
        assert (mixed[i] - causal[i]).abs().max() > 1e-4
        assert (mixed[i] - bidir[i]).abs().max() > 1e-4


def test_future_tokens_reach_the_past_only_through_bidirectional_layers(model):
    ids = torch.randint(0, 50, (1, 10), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 50
    attn = torch.ones_like(ids)
    for plan, past_moves in ((M.causal(), False), ({2: M.full()}, True), ({N_LAYERS - 1: M.full()}, True)):
        a = run(model, ids, attn, plan).logits
        b = run(model, changed, attn, plan).logits
        moved = (a - b).abs().amax(-1)[0]
        assert (moved[:6] > 1e-5).any().item() == past_moves
        assert bool((moved[6:] > 1e-5).all())


def test_sliding_window_layer_equals_dense_reference(model, batch):
    """A per-layer mask reaches that layer: hooking the layer's mask through a manual 4-D mask agrees."""
    ids, attn = batch
    ids, attn = ids[:1], attn[:1]
    sw = M.sliding_window(3)
    plan_out = run(model, ids, attn, dict.fromkeys(range(N_LAYERS), sw)).logits
    dense = sw(0, 0, torch.arange(12).view(-1, 1), torch.arange(12).view(1, -1)).view(1, 1, 12, 12)
    with torch.no_grad():
        ref = model(ids, attention_mask=dense).logits  # transformers passes a 4-D mask through as is
    torch.testing.assert_close(plan_out, ref, atol=1e-6, rtol=0)


def test_document_mask_of_the_wrong_length_is_a_clear_error(model):
    hf.use_masks(model, "document:4,4")
    with pytest.raises(ValueError, match="defined for length 8, got q_len=6"), torch.no_grad():
        model(torch.arange(6).view(1, 6))
    hf.clear_masks(model)


def test_bad_plans(model):
    with pytest.raises(ValueError, match=r"layers \[7\] not in model"):
        hf.use_masks(model, {7: M.full()})
    with pytest.raises(ValueError, match="plan must be"):
        hf.use_masks(model, 3)
    hf.clear_masks(model)
