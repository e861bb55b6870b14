"""SEA: the compressed columns map to keys by the reference's resize rule, each query keeps the reference's column
budget, and the sparse path (no (L, L) tensor at any step) equals dense attention restricted to those keys; FAVOR+
features estimate the softmax kernel and the causal estimate never reads the future; the estimator loss is zero
exactly at the teacher; an estimator distilled from a dense teacher picks entries good enough for associative
recall; inside a transformers model, keeping every key is the model's own attention."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import LlamaConfig, LlamaForCausalLM

from masklab.attention.estimated import (
    EstimatedSparseAttention,
    SEAEstimator,
    add_estimators,
    causal_linear_attention,
    column_of_key,
    column_starts,
    favor_features,
    orthogonal_features,
)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 3000), width=st.integers(1, 256))
def test_columns_follow_the_reference_resize(n, width):
    """resize_from_m_to_t: key rank r of n visible keys sits in column floor(((r + 0.5) / n) * T_M - 1e-4)."""
    r = torch.arange(n, dtype=torch.float64)
    want = torch.floor((r + 0.5) / n * width - 1e-4).long()
    got = column_of_key(torch.tensor([n]), width, n)[0]
    assert torch.equal(got, want)
    starts = column_starts(torch.tensor(n), width)  # (width + 1,): column m holds ranks starts[m] .. starts[m+1]-1
    assert torch.equal(torch.repeat_interleave(torch.arange(width), starts.diff()), want)


def keep_matrix(idx, valid, n_keys):
    """(B, H, L, W) kept indices -> (B, H, L, n_keys) bool (invalid slots point at 0: add, do not overwrite)."""
    return torch.zeros(*idx.shape[:-1], n_keys, dtype=torch.long).scatter_add_(-1, idx, valid.long()) > 0


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("width, k, L", [(16, 3, 50), (8, 2, 40), (32, 5, 20)])
def test_kept_keys_are_the_resized_top_columns(causal, width, k, L):
    torch.manual_seed(0)
    est = SEAEstimator(8, width=width, k=k, causal=causal, max_len=64)
    q, kk, v = (torch.randn(2, 3, L, 8) for _ in range(3))
    scores = est.scores(q, kk, v)
    idx, valid = est.select(scores)
    chosen = est.chosen_columns(scores)
    # the reference resizes the 0/1 column mask to (L, L) by gathering each key's column; hidden keys read fill 0
    resized = est.resized(chosen.float()) > 0.5
    assert torch.equal(keep_matrix(idx, valid, L), resized)
    assert int(valid.sum()) == int(resized.sum())  # no key twice
    n = torch.arange(1, L + 1) if causal else torch.full((L,), L)
    budget = (k * width / n).round().clamp(1, width)  # per query: clamp(round(k * T_M / n), 1, T_M) columns
    assert torch.equal(chosen.sum(-1), budget.long().expand(2, 3, L))
    # and they are the columns of highest estimate
    kth = scores.sort(-1, descending=True).values.gather(-1, (budget.long() - 1).view(1, 1, L, 1).expand(2, 3, L, 1))
    assert bool((scores.masked_fill(~chosen, float("inf")) >= kth).all())


def dense_restricted(q, k, v, keep):
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0) @ v


@pytest.mark.parametrize("causal", [True, False])
def test_sparse_output_equals_dense_restricted_to_kept_keys(causal):
    torch.manual_seed(0)
    est = SEAEstimator(8, width=12, k=3, causal=causal, max_len=64)
    q, k, v = (torch.randn(2, 3, 40, 8) for _ in range(3))
    out = est.attend(q, k, v)
    keep = keep_matrix(*est.last_keep, 40)
    if causal:
        assert not bool(keep.triu(1).any())
    torch.testing.assert_close(out, dense_restricted(q, k, v, keep), atol=1e-5, rtol=1e-5)


def test_keeping_every_column_is_dense_attention():
    torch.manual_seed(0)
    layer = EstimatedSparseAttention(16, 2, width=8, k=40, max_len=32)  # k * T_M / n >= T_M for every row
    x = torch.randn(2, 20, 16)
    torch.testing.assert_close(layer(x), layer(x, sparse=False), atol=1e-5, rtol=1e-5)


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


def test_sparse_path_holds_no_L_by_L_tensor():
    L = 2048
    torch.manual_seed(0)
    est = SEAEstimator(8, width=64, k=8, max_len=L)
    q, k, v = (torch.randn(1, 1, L, 8) for _ in range(3))
    with torch.no_grad(), LargestTensor() as seen:
        est.attend(q, k, v)
    W = est.last_keep[0].shape[-1]  # most keys a query keeps: about max(k, L / T_M)
    assert W <= 2 * L // 64
    assert seen.numel <= L * max(64, W * 8) <= L * L // 8


def test_favor_features_estimate_the_softmax_kernel():
    """Lemma 1: phi(q) . phi(k) estimates exp(q . k / sqrt(d)) up to the per-query constant that cancels in
    attention; with many orthogonal features the normalised rows match softmax attention."""
    g = torch.Generator().manual_seed(0)
    d = 16
    proj = orthogonal_features(32768, d, g)
    q, k = torch.randn(1, 1, 6, d, generator=g) * 0.6, torch.randn(1, 1, 9, d, generator=g) * 0.6
    kern = favor_features(q, proj, query=True, eps=0.0) @ favor_features(k, proj, query=False).transpose(-1, -2)
    est = kern / kern.sum(-1, keepdim=True)
    want = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)  # rows of about 0.11 each
    assert (est - want).abs().max() < 0.02
    # rows of the projection: orthogonal within a block of d
    block = proj[:d] / proj[:d].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(d), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_causal_linear_attention_equals_the_quadratic_form(chunk):
    g = torch.Generator().manual_seed(chunk)
    fq, fk, v = torch.rand(2, 3, 50, 11, generator=g), torch.rand(2, 3, 50, 11, generator=g), torch.randn(2, 3, 50, 5)
    a = (fq @ fk.transpose(-1, -2)).tril()
    torch.testing.assert_close(causal_linear_attention(fq, fk, v, chunk), (a @ v) / a.sum(-1, keepdim=True))


@pytest.mark.parametrize("kernel", ["relu", "softmax"])
def test_causal_estimate_never_reads_the_future(kernel):
    torch.manual_seed(0)
    est = SEAEstimator(8, width=8, k=2, max_len=64, kernel=kernel)
    q, k, v = (torch.randn(1, 2, 30, 8) for _ in range(3))
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    k2[:, :, 20:] *= 5.0  # large future keys: a max over all keys would rescale the past keys' features
    v2[:, :, 20:] = torch.randn(1, 2, 10, 8)
    with torch.no_grad():
        a, b = est.scores(q, k, v), est.scores(q2, k2, v2)
        assert torch.equal(a[:, :, :20], b[:, :, :20])
        assert torch.equal(est.attend(q, k, v)[:, :, :20], est.attend(q2, k2, v2)[:, :, :20])


def test_distill_loss_is_zero_exactly_at_the_teacher():
    torch.manual_seed(0)
    est = SEAEstimator(8, width=6, k=2, max_len=32)
    q, k, v = (torch.randn(2, 2, 15, 8) for _ in range(3))
    with torch.no_grad():
        own = torch.softmax(est.resized(est.scores(q, k, v)), dim=-1)  # the estimate itself, stretched to (L, L)
        assert own.triu(1).max() < 1e-30  # hidden (future) keys get nothing
        assert est.distill_loss(q, k, v, own).abs() < 1e-6
        teacher = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(~torch.ones(15, 15).tril().bool(), -1e9), -1)
        assert est.distill_loss(q, k, v, teacher) > 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="width must be an int >= 1, got 0"):
        SEAEstimator(8, width=0)
    with pytest.raises(ValueError, match="kernel must be one of \\['relu', 'softmax'\\], got 'elu'"):
        SEAEstimator(8, kernel="elu")
    with pytest.raises(ValueError, match="sequence length 40 exceeds max_len 32"):
        SEAEstimator(8, max_len=32).attend(*(torch.randn(1, 1, 40, 8) for _ in range(3)))


def test_sea_distilled_from_dense_teacher_learns_recall(recall):
    recall_batch, RecallModel = recall
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pairs, length = 6, 25
    # at the query (25 visible keys) k * T_M / n = 4 * 12 / 25 rounds to 2 columns of about 2 keys
    teacher = RecallModel(EstimatedSparseAttention(32, 2, width=12, k=4, max_len=length), 32)
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(120):  # 1) dense teacher learns the task
        k, v, _, y = recall_batch(g, 32, pairs, length)
        loss = F.cross_entropy(teacher(k, v, sparse=False), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student = copy.deepcopy(teacher)
    test = recall_batch(torch.Generator().manual_seed(99), 512, pairs, length)

    def accuracy(m, **kw):
        with torch.no_grad():
            return (m(test[0], test[1], **kw).argmax(-1) == test[3]).float().mean().item()

    before = accuracy(student)
    opt = torch.optim.Adam(student.attn.est.parameters(), lr=5e-2)
    for _ in range(300):  # 2) only the estimator learns, from the teacher's attention matrices
        k, v, _, _ = recall_batch(g, 32, pairs, length)
        with torch.no_grad():
            x = teacher.embed(k, v)
            probs = teacher.attn.dense_probs(x)
        loss = student.attn.distill_loss(x, probs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student(test[0], test[1])
    kept = student.attn.est.last_keep[1][:, :, -1].sum(-1).float().mean()  # keys kept at the query
    assert accuracy(teacher, sparse=False) > 0.95
    assert kept <= 5  # of 25
    # measured 0.86 against 0.21 before distillation (the decoder learns slowly: 0.42 after 150 steps at lr 2e-2)
    assert accuracy(student) > 0.75 > before + 0.4


# --- inside a transformers model ---------------------------------------------------------------------------------


@pytest.fixture
def llama():
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def test_hf_sea_keeping_every_key_is_the_models_attention(llama):
    ids = torch.randint(0, 50, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = llama(ids).logits
        ests = add_estimators(llama, width=8, k=64)
        got = llama(ids).logits
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for est in ests.values():
            est.distilling = True  # dense output (teacher forcing) and the estimator's loss
        torch.testing.assert_close(llama(ids).logits, want, atol=1e-5, rtol=1e-5)
        assert all(torch.isfinite(e.last_loss) and e.last_loss > 0 for e in ests.values())


def test_hf_sea_refuses_padding(llama):
    add_estimators(llama, width=8, k=2)
    attn = torch.ones(1, 10, dtype=torch.long)
    attn[0, :3] = 0
    with torch.no_grad(), pytest.raises(ValueError, match="no KV cache, no padding"):
        llama(torch.arange(10)[None], attention_mask=attn)
