"""Associative recall for the trainable sparse masks (DMA, SEA).

Each position is one (key, value) pair or a filler; the last position holds a query key and the target is the
value stored with that key. One attention layer solves it by matching query to key and copying the value, if
it keeps the right position: the sparse masks must learn which positions to keep.
"""

import pytest
import torch
from torch import nn

N_KEYS, N_VALS = 16, 16


def recall_batch(g: torch.Generator, batch: int, pairs: int, length: int):
    """keys, vals, is_pair (each (batch, length)), query key last, and targets (batch,)."""
    keys = torch.stack([torch.randperm(N_KEYS, generator=g)[:pairs] for _ in range(batch)])  # distinct keys
    vals = torch.randint(0, N_VALS, (batch, pairs), generator=g)
    pos = torch.stack([torch.randperm(length - 1, generator=g)[:pairs] for _ in range(batch)])
    k = torch.full((batch, length), N_KEYS)  # N_KEYS = filler key
    v = torch.full((batch, length), N_VALS)  # N_VALS = filler / query value
    k.scatter_(1, pos, keys)
    v.scatter_(1, pos, vals)
    pick = torch.randint(0, pairs, (batch,), generator=g)
    k[:, -1] = keys[torch.arange(batch), pick]
    is_pair = torch.zeros(batch, length, dtype=torch.bool).scatter_(1, pos, True)
    return k, v, is_pair, vals[torch.arange(batch), pick]


class RecallModel(nn.Module):
    def __init__(self, attn: nn.Module, dim: int):
        super().__init__()
        self.k_emb = nn.Embedding(N_KEYS + 1, dim)
        self.v_emb = nn.Embedding(N_VALS + 1, dim)
        self.q_flag = nn.Parameter(torch.randn(dim) * 0.1)  # marks the query position
        self.attn = attn
        self.head = nn.Linear(dim, N_VALS)

    def embed(self, k, v):
        x = self.k_emb(k) + self.v_emb(v)
        return torch.cat([x[:, :-1], x[:, -1:] + self.q_flag], dim=1)

    def forward(self, k, v, **kw):
        x = self.embed(k, v)
        return self.head(self.attn(x, **kw)[:, -1])  # (B, N_VALS)


@pytest.fixture
def recall():
    return recall_batch, RecallModel


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every attention test runs on one thread."""
    yield
