"""MEAP (Zhuang et al. 2025): random input positions become the mask token, next-token targets unchanged,
a separate pattern per row (MEAP's code uses one per batch)."""

import torch

from masklab.corrupt import keyed
from masklab.corrupt.meap import meap_mask


def test_exact_count_targets_clean_and_per_row_patterns():
    B, L = 64, 50
    ids = torch.randint(5, 1000, (B, L))
    ids[:, 0] = 1  # BOS
    att = torch.ones(B, L, dtype=torch.long)
    att[:10, 40:] = 0
    c = meap_mask(ids, keyed.example_keys(0, 0, range(B)), mask_id=4, special_ids=[0, 1], prob=0.15, attention_mask=att)
    n = (att.bool() & (ids != 1)).sum(1)
    assert torch.equal(c.mask.sum(1), torch.floor(n * 0.15 + 0.5).long())
    assert not c.mask[:, 0].any() and not c.mask[:10, 40:].any()
    assert torch.equal(c.inputs[c.mask], torch.full((int(c.mask.sum()),), 4))
    assert torch.equal(c.targets[att.bool()], ids[att.bool()]) and (c.targets[~att.bool()] == -100).all()
    assert len({tuple(r.nonzero().flatten().tolist()) for r in c.mask}) > B - 2


def test_same_example_same_mask_in_any_batch():
    ids = torch.randint(5, 1000, (8, 30))
    k = keyed.example_keys(3, 1, range(8))
    a = meap_mask(ids, k, mask_id=4, prob=0.2)
    b = meap_mask(ids[[5, 2]], k[[5, 2]], mask_id=4, prob=0.2)
    assert torch.equal(a.inputs[[5, 2]], b.inputs)
