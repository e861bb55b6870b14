"""Score-guided masking (Ask2Mask; HPM hard-token mining): top / bottom / proportional, exact budget,
easy-to-hard guided share."""

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.guided import easy_to_hard, score_guided_mask

SPECIAL, MASK, V = [0, 1, 2, 3], 3, 100


def test_top_and_bottom_pick_extreme_scores_exactly():
    B, L = 16, 40
    ids = torch.randint(4, V, (B, L))
    ids[:, 0] = 1
    scores = torch.rand(B, L)
    scores[:, 0] = 10.0  # the special token has the top score but is never picked
    k = keyed.example_keys(0, 0, range(B))
    top = score_guided_mask(ids, k, scores, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, count=6, mode="top")
    bot = score_guided_mask(ids, k, scores, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.15, mode="bottom")
    s = scores[:, 1:]
    assert torch.equal(top.mask[:, 1:], s >= s.topk(6, dim=1).values[:, -1:])
    kb = int(39 * 0.15 + 0.5)
    assert torch.equal(bot.mask[:, 1:], s <= s.topk(kb, dim=1, largest=False).values[:, -1:])


def test_proportional_frequencies_follow_scores():
    """count=1: Gumbel-top-1 is exact sampling from score / sum(score)."""
    B, L = 20000, 5
    ids = torch.full((B, L), 10)
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]).expand(B, L)
    c = score_guided_mask(
        ids,
        keyed.example_keys(0, 0, range(B)),
        scores,
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        count=1,
        mode="proportional",
    )
    freq = c.mask.double().mean(0)
    assert (freq - torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0], dtype=torch.float64)).abs().max() < 0.012


def test_guided_share_and_schedule():
    B, L = 50, 100
    ids = torch.randint(4, V, (B, L))
    scores = torch.arange(L, dtype=torch.float32).expand(B, L)  # hardest tokens at the end
    g = easy_to_hard(0.5, start=0.0, end=0.6)
    assert g == pytest.approx(0.3)
    c = score_guided_mask(
        ids,
        keyed.example_keys(0, 0, range(B)),
        scores,
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        count=20,
        guided=g,
    )
    assert (c.mask.sum(1) == 20).all()
    assert c.mask[:, -6:].all()  # the 6 guided picks are the top-6 scores
    with pytest.raises(ValueError, match="guided"):
        score_guided_mask(
            ids,
            keyed.example_keys(0, 0, range(B)),
            scores,
            mask_id=MASK,
            vocab_size=V,
            special_ids=SPECIAL,
            guided=1.5,
        )
    with pytest.raises(ValueError, match="progress"):
        easy_to_hard(2.0)
