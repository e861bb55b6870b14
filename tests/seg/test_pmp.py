"""Prompt-guided Mask Proposal (masklab.seg.pmp, masklab.objectives.pmp): the matching cost is Mask2Former's
BCE + dice written out per pixel, proposal IoUs equal masklab.seg.metrics.iou, hidden (padded) memory positions
change nothing, the proposer without the prompt never reads it while PMP's does, and the recall of the evaluation
is the share of examples with a proposal (or the top-scored one) at IoU >= 0.5."""

import math

import pytest
import torch
from torch import nn

from masklab.objectives.pmp import PMPObjective
from masklab.seg.metrics import iou
from masklab.seg.models.rows import EXAMPLES_PER_CANVAS, Batch, CanvasRows, Layout
from masklab.seg.models.vocab import encode, seg_tokenizer
from masklab.seg.pmp import CrossAttention, Proposer, match_cost, proposal_ious

LAYOUT = Layout(size=64, prompt=8, answer=2, grid=16)


def test_match_cost_is_mean_bce_plus_dice_per_proposal():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=g) * 3
    target = torch.rand(2, 5, 5, generator=g) > 0.6
    cost = match_cost(logits, target)
    for b in range(2):
        for n in range(3):
            p = [1 / (1 + math.exp(-float(x))) for x in logits[b, n].flatten()]
            t = [float(v) for v in target[b].flatten()]
            bce = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t, strict=True)) / 25
            dice = 1 - (2 * sum(pi * ti for pi, ti in zip(p, t, strict=True)) + 1) / (sum(p) + sum(t) + 1)
            assert cost[b, n].item() == pytest.approx(bce + dice, rel=1e-5)


def test_proposal_ious_equal_the_metrics_iou():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(3, 4, 16, 16, generator=g) > 0.5
    target = torch.rand(3, 16, 16, generator=g) > 0.7
    ious = proposal_ious(masks, target)
    for b in range(3):
        expected = iou(masks[b], target[b].expand(4, -1, -1))
        assert torch.allclose(ious[b], expected.float(), atol=1e-6)


def test_cross_attention_ignores_hidden_memory():
    torch.manual_seed(0)
    attn = CrossAttention(16, 12, heads=2)
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 12)
    keep = torch.tensor([[False, False, True, True, True], [True] * 5])
    changed = memory.clone()
    changed[0, :2] = torch.randn(2, 12)  # hidden positions of the first example
    assert torch.allclose(attn(x, memory, keep), attn(x, changed, keep), atol=1e-6)
    assert torch.allclose(attn(x, memory, keep)[0], attn(x[:1], memory[:1, 2:])[0], atol=1e-6)  # = the kept ones


def _prompts(tok, texts):
    ids = [encode(tok, t) for t in texts]
    return torch.tensor([[0] * (8 - len(i)) + i for i in ids])  # left-padded, as the rows are


def test_only_the_prompted_proposer_reads_the_expression():
    tok = seg_tokenizer(64)
    a, b = _prompts(tok, ["the 7", "the leftmost circle"]), _prompts(tok, ["the circle", "the 3 left of the 7"])
    pixels = torch.rand(2, 3, 64, 64)
    torch.manual_seed(0)
    plain = Proposer(len(tok), 8, prompt=False).eval()
    torch.manual_seed(0)
    prompted = Proposer(len(tok), 8, prompt=True).eval()
    with torch.no_grad():
        assert torch.equal(plain(pixels, a)[0], plain(pixels, b)[0])
        masks_a, masks_b = prompted(pixels, a)[0], prompted(pixels, b)[0]
        assert masks_a.shape == (2, 8, 32, 32) and not torch.allclose(masks_a, masks_b)
        prompted.word.weight[0] = torch.randn(64)  # the padding's embedding is never attended
        assert torch.allclose(prompted(pixels, a)[0], masks_a, atol=1e-5)


class _Fixed(nn.Module):
    """A proposer stand-in: query 2 proposes the target exactly, query 0 (the top-scored) proposes nothing when
    ``top_misses``, else the target too."""

    def __init__(self, top_misses: bool):
        super().__init__()
        self.top_misses = top_misses
        self.w = nn.Parameter(torch.zeros(()))
        self.target: torch.Tensor | None = None

    def forward(self, pixels, prompt):
        t = torch.nn.functional.interpolate(self.target[:, None].float(), size=(32, 32), mode="area")[:, 0]
        masks = torch.full((len(pixels), 4, 32, 32), -10.0)
        masks[:, 2] = torch.where(t > 0.5, 10.0, -10.0)
        if not self.top_misses:
            masks[:, 0] = masks[:, 2]
        return masks + self.w, torch.tensor([3.0, 0.0, 1.0, 0.0]).expand(len(pixels), 4)


def test_recall_counts_a_hit_among_all_proposals_and_for_the_top_scored_one():
    tok = seg_tokenizer(64)
    rows = CanvasRows(5, 2 * EXAMPLES_PER_CANVAS, LAYOUT, "seg", tok)[0:6]
    target = Batch.unpack(rows, LAYOUT).mask
    for top_misses in (True, False):
        model = _Fixed(top_misses)
        model.target = target
        with torch.no_grad():
            hit = torch.nn.functional.interpolate(model(rows, None)[0], size=(64, 64), mode="bilinear")[:, 2] > 0
        ious = iou(hit, target).float()  # the only proposal that overlaps the target
        out = PMPObjective(model, LAYOUT).evaluate(rows, batch_size=6)
        assert out["examples"] == 6 and 0 < out["R@0.5"]
        assert out["best_iou"] == pytest.approx(ious.mean().item(), abs=1e-6)
        assert out["R@0.5"] == pytest.approx((ious >= 0.5).float().mean().item())
        assert out["R1@0.5"] == (0.0 if top_misses else out["R@0.5"])
