"""DMA: the O(L * w) causal selection keeps exactly the keys of the reference's dense top-k rule (flash-dmattn
``topk_mask``: mask the broadcast importance, top-w per query) and never holds an (L, L) tensor; sparse attention
over the kept keys equals dense attention restricted to them, also inside a transformers model; a flat importance
is sliding-window attention; the bias gets gradients; one DMA layer learns associative recall."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import LlamaConfig, LlamaForCausalLM

from masklab.attention import hf
from masklab.attention import mods as M
from masklab.attention.compile import to_dense
from masklab.attention.dynamic import (
    DynamicMaskAttention,
    add_dynamic_masks,
    causal_topk,
    dense_topk,
    key_ranks,
    select_keys,
    use_attention,
)


def _layer(window, seed=0, **kw):
    torch.manual_seed(seed)
    layer = DynamicMaskAttention(24, 3, window, **kw)
    with torch.no_grad():
        layer.A.uniform_(-1.0, 1.0)  # a non-flat importance
    return layer


def reference_keep(delta, allowed, window):
    """flash-dmattn's rule on the dense matrix: bias (B, H, Lq, Lk) masked, top-w per row, kept where allowed."""
    bias = delta[:, :, None, :].masked_fill(~allowed, float("-inf"))
    top = bias.topk(min(window, delta.shape[-1]), dim=-1)
    keep = torch.zeros(bias.shape, dtype=torch.long).scatter_add_(-1, top.indices, (top.values > -1e30).long())
    return keep > 0


def as_dense(idx, valid, n_keys):
    """(B, H, Lq, w) kept indices -> (B, H, Lq, n_keys) bool (invalid slots point at 0: add, do not overwrite)."""
    B, H, Lq, _ = idx.shape
    return torch.zeros(B, H, Lq, n_keys, dtype=torch.long).scatter_add_(-1, idx, valid.long()) > 0


@settings(max_examples=40, deadline=None)
@given(
    L=st.integers(1, 70),
    window=st.integers(1, 24),
    heads=st.integers(1, 3),
    ties=st.booleans(),
    pad=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_causal_scan_keeps_the_dense_topk(L, window, heads, ties, pad, seed):
    g = torch.Generator().manual_seed(seed)
    delta = torch.randn(2, heads, L, generator=g)
    if ties:
        delta = delta.round()  # many equal importances: the later key wins
    key_ok = torch.rand(2, L, generator=g) > 0.3 if pad else None
    ranks, _ = key_ranks(delta, key_ok)
    w = min(window, L)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    want = dense_topk(ranks, causal, w)
    assert torch.equal(causal_topk(ranks, w).sort(-1).values, want.sort(-1).values)
    offset = L // 2  # queries from the middle on (a KV cache)
    got = causal_topk(ranks, w, torch.arange(offset, L))
    assert torch.equal(got.sort(-1).values, want[:, :, offset:].sort(-1).values)


@pytest.mark.parametrize("window", [1, 5, 16, 80])
def test_selection_is_the_reference_topk_mask(window):
    g = torch.Generator().manual_seed(window)
    delta = torch.randn(2, 3, 60, generator=g)  # continuous: no ties
    key_ok = torch.ones(2, 60, dtype=torch.bool)
    key_ok[1, :7] = False  # left padding
    idx, valid = select_keys(delta, window, key_ok=key_ok)
    allowed = torch.ones(60, 60, dtype=torch.bool).tril() & key_ok[:, None, None, :]
    assert torch.equal(as_dense(idx, valid, 60), reference_keep(delta, allowed, window))


def test_flat_importance_keeps_the_most_recent_keys():
    idx, valid = select_keys(torch.ones(1, 2, 30), 4)
    assert torch.equal(as_dense(idx, valid, 30)[0, 0], to_dense(M.sliding_window(4), 30, 30)[0, 0])


def oracle(layer, x, mask):
    """Dense attention over (L, L) scores with the DMA bias, restricted to the reference rule's kept keys."""
    B, L, dim = x.shape
    q, k, v, v_flat = layer._project(x)
    delta = layer.importance(v_flat)
    allowed = to_dense(mask or M.causal(), L, L)
    keep = reference_keep(delta, allowed, layer.window)
    s = q @ k.transpose(-1, -2) * layer.head_dim**-0.5 + delta[:, :, None, :]
    p = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0)
    return layer.out((p @ v).transpose(1, 2).reshape(B, L, dim))


@pytest.mark.parametrize(
    "window, mask",
    [
        (4, None),
        (1, None),
        (40, None),
        (4, M.causal()),
        (5, M.document([7, 9, 4])),
        (3, M.sliding_window(6)),
        (4, M.full()),
    ],
)
def test_sparse_output_equals_dense_restricted_to_kept_keys(window, mask):
    layer = _layer(window)
    x = torch.randn(2, 20, 24)
    torch.testing.assert_close(layer(x, mask), oracle(layer, x, mask), atol=1e-5, rtol=1e-5)


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_causal_path_holds_no_L_by_L_tensor():
    L, window = 2048, 16
    torch.manual_seed(0)
    layer = DynamicMaskAttention(16, 1, window)
    x = torch.randn(1, L, 16)
    with torch.no_grad(), LargestTensor() as seen:
        layer(x)
    # the gathered keys (B, H, L, w, D) are the largest: O(L * w), far below L * L
    assert seen.numel <= L * window * 16 < L * L


def test_gradients_reach_the_importance_bias():
    layer = _layer(4)
    layer(torch.randn(2, 12, 24)).square().sum().backward()
    assert layer.A.grad is not None and layer.A.grad.abs().sum() > 0
    assert layer.dt_proj.weight.grad.abs().sum() > 0


def test_bad_window():
    with pytest.raises(ValueError, match="window must be >= 1, got -2"):
        DynamicMaskAttention(8, 2, -2)
    with pytest.raises(ValueError, match="window must be an int >= 1, got 0"):
        select_keys(torch.randn(1, 1, 5), 0)


def test_dma_learns_associative_recall(recall):
    recall_batch, RecallModel = recall
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pairs, length, window = 6, 25, 8  # 24 context positions, 6 hold pairs, each head keeps 8
    model = RecallModel(DynamicMaskAttention(32, 2, window), 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        k, v, _, y = recall_batch(g, 32, pairs, length)
        loss = F.cross_entropy(model(k, v), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    k, v, is_pair, y = recall_batch(torch.Generator().manual_seed(99), 512, pairs, length)
    with torch.no_grad():
        acc = (model(k, v).argmax(-1) == y).float().mean().item()
    idx, valid = model.attn.last_keep
    heads_keep = is_pair.gather(1, idx[:, :, -1].flatten(1)) & valid[:, :, -1].flatten(1)
    assert acc > 0.9  # chance is 1/16
    # the union over heads of the keys kept at the query covers (almost) every pair: the bias learned which
    # to keep
    kept = torch.zeros_like(is_pair).scatter_(1, idx[:, :, -1].flatten(1), heads_keep)
    assert (kept.sum(1).float() / pairs).mean() > 0.9


# --- inside a transformers model ---------------------------------------------------------------------------------


@pytest.fixture
def llama():
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA: the importance is per key/value head, as Doge's
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    # distinct tokens per row: equal tokens have equal values, hence equal importance, and the reference's top-k
    # breaks such ties arbitrarily
    ids = torch.stack([torch.randperm(50, generator=g)[:24] for _ in range(2)])
    attn = torch.ones(2, 24, dtype=torch.long)
    attn[1, :5] = 0  # left padding
    return ids, attn


def _dense_dma(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """Oracle attention function: (L, L) scores + bias, masked to flash-dmattn's top-k of the causal & padding mask."""
    dm = module.dynamic_mask
    B, H, L, _ = query.shape
    groups = H // key.shape[1]
    delta = dm.importance(value)  # (B, Hkv, L)
    pad = attention_mask.padding_mask
    allowed = torch.ones(L, L, dtype=torch.bool).tril() & pad[:, None, None, :]
    keep = reference_keep(delta, allowed, dm.window).repeat_interleave(groups, 1)  # (B, H, L, L)
    k, v, bias = (t.repeat_interleave(groups, 1) for t in (key, value, delta))
    s = query @ k.transpose(-1, -2) * scaling + bias[:, :, None, :]
    p = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0)
    return (p @ v).transpose(1, 2), None


def test_hf_dma_equals_dense_attention_on_the_reference_keys(llama, batch):
    ids, attn = batch
    masks = add_dynamic_masks(llama, 6)
    torch.manual_seed(2)
    for dm in masks.values():
        with torch.no_grad():
            dm.A.uniform_(-2.0, 2.0)
            dm.dt_proj.weight.mul_(20.0)  # importance spread well beyond the score differences
    with torch.no_grad():
        got = llama(ids, attention_mask=attn).logits
        assert masks[0].last_keep[0].shape == (2, 2, 24, 6)  # (B, Hkv, L, window)
        use_attention(llama, "dma_dense_oracle", _dense_dma)  # same MaskContext, dense attention
        want = llama(ids, attention_mask=attn).logits
    real = attn.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_hf_flat_importance_is_sliding_window_attention(llama, batch):
    ids, attn = batch
    with torch.no_grad():
        hf.use_masks(llama, M.sliding_window(5))
        want = llama(ids, attention_mask=attn).logits
        hf.clear_masks(llama)
        add_dynamic_masks(llama, 5)  # A = 0: every key equally important, ties go to the later key
        got = llama(ids, attention_mask=attn).logits
    real = attn.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


def test_hf_generation_with_cache_equals_without(llama):
    masks = add_dynamic_masks(llama, 3)
    torch.manual_seed(3)
    for dm in masks.values():
        with torch.no_grad():
            dm.A.uniform_(-2.0, 2.0)
    ids = torch.tensor([[5, 7, 9, 11, 2, 30, 8]])
    with torch.no_grad():  # with the cache, one query at offset q_offset selects from all cached keys
        cached = llama.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
        full = llama.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, full)
