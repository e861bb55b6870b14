"""DMA: sparse attention over the kept keys equals dense attention restricted to them; the importance bias
gets
gradients; one DMA layer learns associative recall while keeping fewer keys than the context holds."""

import pytest
import torch
import torch.nn.functional as F

from masklab.attention import mods as M
from masklab.attention.dynamic import DynamicMaskAttention


def _layer(window, seed=0, **kw):
    torch.manual_seed(seed)
    layer = DynamicMaskAttention(24, 3, window, **kw)
    with torch.no_grad():
        layer.A.uniform_(-1.0, 1.0)  # a non-flat importance
    return layer


@pytest.mark.parametrize("window, mask", [(4, None), (1, None), (40, None), (5, M.document([7, 9, 4]))])
def test_sparse_output_equals_dense_restricted_to_kept_keys(window, mask):
    layer = _layer(window)
    x = torch.randn(2, 20, 24)
    torch.testing.assert_close(layer(x, mask), layer.dense_reference(x, mask), atol=1e-5, rtol=1e-5)


def test_kept_keys_are_the_top_window_of_importance_among_allowed():
    layer = _layer(3)
    x = torch.randn(1, 10, 24)
    layer(x)
    idx, valid = layer.last_keep
    _, _, _, v_flat = layer._project(x)
    delta = layer.importance(v_flat)[0]  # (H, L)
    for h in range(3):
        for i in range(10):
            want = sorted(sorted(range(i + 1), key=lambda j: -delta[h, j].item())[:3])  # causal candidates
            got = sorted(idx[0, h, i][valid[0, h, i]].tolist())
            assert got == want


def test_gradients_reach_the_importance_bias():
    layer = _layer(4)
    layer(torch.randn(2, 12, 24)).square().sum().backward()
    assert layer.A.grad is not None and layer.A.grad.abs().sum() > 0
    assert layer.dt_proj.weight.grad.abs().sum() > 0


def test_bad_window():
    with pytest.raises(ValueError, match="window must be >= 1, got -2"):
        DynamicMaskAttention(8, 2, -2)


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
