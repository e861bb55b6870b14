"""SEA: exact attention on the estimated mask equals dense attention restricted to the kept entries; the
estimator, distilled from a dense teacher, picks entries good enough to solve associative recall."""

import copy

import pytest
import torch
import torch.nn.functional as F

from masklab.attention import mods as M
from masklab.attention.estimated import EstimatedSparseAttention, pool_columns


@pytest.mark.parametrize("top_k, chunk, mask", [(3, 1, None), (2, 3, None), (2, 4, M.document([8, 6, 6]))])
def test_sparse_output_equals_dense_restricted_to_kept_entries(top_k, chunk, mask):
    torch.manual_seed(0)
    layer = EstimatedSparseAttention(24, 3, top_k, est_dim=4, chunk=chunk)
    x = torch.randn(2, 20, 24)
    torch.testing.assert_close(layer(x, mask), layer.dense_reference(x, mask), atol=1e-5, rtol=1e-5)
    idx, valid = layer.last_keep
    assert int(valid.sum(-1).max()) <= top_k * chunk


def test_keeping_every_chunk_is_dense_attention():
    torch.manual_seed(0)
    layer = EstimatedSparseAttention(16, 2, top_k=5, chunk=4)  # 5 chunks of 4 cover L = 20
    x = torch.randn(2, 20, 16)
    torch.testing.assert_close(layer(x), layer(x, sparse=False), atol=1e-5, rtol=1e-5)


def test_distillation_loss_is_kl_to_the_pooled_teacher():
    torch.manual_seed(0)
    layer = EstimatedSparseAttention(16, 2, top_k=2, chunk=1)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        own = layer.estimate(x).exp()
    assert layer.distill_loss(x, own).abs() < 1e-5  # KL(p || p) = 0
    teacher = layer.dense_probs(x)
    assert layer.distill_loss(x, teacher) > 0
    torch.testing.assert_close(pool_columns(teacher, 4).sum(-1), torch.ones(2, 2, 9))


def test_sea_distilled_from_dense_teacher_learns_recall(recall):
    recall_batch, RecallModel = recall
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pairs, length = 6, 25
    teacher = RecallModel(EstimatedSparseAttention(32, 2, top_k=2, est_dim=16, chunk=2), 32)
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
    opt = torch.optim.Adam(student.attn.est.parameters(), lr=2e-2)
    for _ in range(120):  # 2) only the estimator learns, from the teacher's attention matrices
        k, v, _, _ = recall_batch(g, 32, pairs, length)
        with torch.no_grad():
            x = teacher.embed(k, v)
            probs = teacher.attn.dense_probs(x)
        loss = student.attn.distill_loss(x, probs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy(teacher, sparse=False) > 0.95
    # each query keeps 2 chunks of 2 = 4 of 24 keys, yet recall works after distillation
    assert accuracy(student) > 0.9 > before + 0.3
