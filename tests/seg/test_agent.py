"""SegAgent (masklab.seg.agent): the random-walker tool keeps its seeds, trajectory rows are the simulated
annotator's (rebuilt from the canvas world and masklab.seg.clicks), and a rollout whose policy is the annotator
reproduces the annotator's NoC."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.canvases import canvas
from masklab.seg.agent import (
    AgentLayout,
    AgentRows,
    click_is_useful,
    click_maps,
    oracle_ious,
    oracle_trajectory,
    rollout,
    walker_segment,
)
from masklab.seg.clicks import Click, next_click, noc
from masklab.seg.models.rows import example
from masklab.seg.models.vocab import encode, seg_tokenizer


def test_walker_keeps_its_seeds_and_needs_a_positive_click():
    c = canvas(3, 0, 64)
    gt = c.masks[0]
    pos = next_click(np.zeros_like(gt), gt)
    ys, xs = np.nonzero(~gt)
    neg = Click(int(ys[len(ys) // 2]), int(xs[len(xs) // 2]), False)
    m = walker_segment(c.image, [pos, neg])
    # random_walker gives every seeded pixel its seed's label: the 3 x 3 square of a positive click is object,
    # the border and negative clicks are background
    assert m[pos.y - 1 : pos.y + 2, pos.x - 1 : pos.x + 2].all()
    assert not m[neg.y, neg.x]
    assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
    assert not walker_segment(c.image, [neg]).any()  # no positive click: nothing is the object


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15), st.booleans()), max_size=6, unique_by=lambda t: t[:2])
)
def test_click_maps_mark_exactly_the_clicks(clicks):
    rows = torch.full((1, 6, 3), -1, dtype=torch.long)
    for k, (y, x, p) in enumerate(clicks):
        rows[0, k] = torch.tensor([y, x, int(p)])
    maps = click_maps(rows, 16)[0]
    want = np.zeros((2, 16, 16))
    for y, x, p in clicks:
        want[0 if p else 1, y, x] = 1
    assert np.array_equal(maps.numpy(), want)


def test_rows_are_the_annotators_trajectory_steps():
    tok = seg_tokenizer(64)
    layout = AgentLayout(64, clicks=3, prompt=8)
    rows = AgentRows(5, 2, layout, tok, steps=3, stop_at=0.95)
    for i in range(len(rows)):
        b = layout.unpack(rows[i : i + 1])
        c, text, n = example(5, i // 3, 64)
        masks, clicks = oracle_trajectory(c.image, c.masks[n], 3, 0.95)
        k = (i % 3) % len(clicks)
        assert np.array_equal(b["pixels"][0].permute(1, 2, 0).numpy(), np.rint(c.image * 255) / 255.0)
        assert np.array_equal(b["gt"][0].numpy(), c.masks[n])
        # the mask before click k is the walker's answer to the clicks before it (empty before the first)
        assert np.array_equal(b["mask"][0].numpy(), walker_segment(c.image, clicks[:k]) if k else masks[0])
        y, x, p = b["target"][0].tolist()
        assert (
            Click(y, x, bool(p))
            == clicks[k]
            == next_click(b["mask"][0], c.masks[n], click_maps(b["clicks"], 64)[0].sum(0))
        )
        assert click_is_useful(clicks[k], b["mask"][0].numpy(), c.masks[n])  # the annotator clicks an error
        past = [Click(*v[:2], bool(v[2])) for v in b["clicks"][0].tolist() if v[0] >= 0]
        assert past == clicks[:k]
        prompt = b["prompt"][0]
        assert prompt[prompt != 0].tolist() == encode(tok, text)


class _Annotator(torch.nn.Module):
    """A policy that clicks where the simulated annotator clicks: one-hot logits at next_click (the example is
    found by its image and expression: three examples share a canvas)."""

    def __init__(self, pixels, prompt, gt):
        super().__init__()
        self.pixels, self.prompt, self.gt = pixels, prompt, gt

    def forward(self, pixels, mask, clicks, prompt):
        S = mask.shape[-1]
        out = torch.full((len(mask), 2 * S * S), -1.0)
        for r in range(len(mask)):
            same = ((self.pixels - pixels[r]).abs().flatten(1).sum(1) == 0) & (self.prompt == prompt[r]).all(1)
            i = int(same.nonzero()[0])
            taken = click_maps(clicks[r : r + 1], S)[0].sum(0) > 0
            c = next_click(mask[r], self.gt[i], taken)
            out[r, (0 if c.positive else 1) * S * S + c.y * S + c.x] = 1.0
        return out


def test_a_rollout_of_the_annotator_is_the_annotator():
    tok = seg_tokenizer(64)
    layout = AgentLayout(64, clicks=1, prompt=8)
    b = layout.unpack(AgentRows(2, 3, layout, tok, steps=1)[:3])
    ious = rollout(_Annotator(b["pixels"], b["prompt"], b["gt"]), b, max_clicks=5, stop_at=0.9)
    images = b["pixels"].permute(0, 2, 3, 1).numpy()
    for r in range(3):
        want = oracle_ious(images[r], b["gt"][r].numpy(), max_clicks=5, stop_at=0.9)
        assert np.allclose(ious[r, : len(want)].numpy(), want)
        assert (ious[r, len(want) :] == want[-1]).all()  # a stopped row keeps its last IoU
        assert noc(ious[r].tolist(), 0.9, 5) == noc(want, 0.9, 5)
