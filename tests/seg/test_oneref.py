"""OneRef (masklab.seg.oneref, masklab.objectives.oneref): the visual target-relation score equals the reference's
generator, boxes equal the canvases' own, GIoU on hand-computed cases, word roles follow the canvas grammar, the
text mask follows the reference's rule, random masking matches the referring mask's counts, and padding is hidden."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed
from masklab.data.canvases import canvas
from masklab.objectives.oneref import OneRefObjective
from masklab.seg.models.rows import Layout
from masklab.seg.models.vocab import encode, seg_tokenizer
from masklab.seg.oneref import (
    OneTower,
    box_iou,
    box_of_masks,
    generalized_box_iou,
    semantic_scores,
    visual_scores,
    word_roles,
)

TOK = seg_tokenizer(64)


def _prompts(texts, P=8):
    out = torch.zeros(len(texts), P, dtype=torch.long)
    for r, t in enumerate(texts):
        ids = encode(TOK, t)
        out[r, P - len(ids) :] = torch.tensor(ids)  # left-padded, as the canvas rows
    return out


@settings(max_examples=30, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_visual_scores_equal_the_reference_generator(cx, cy, w, h):
    g = 8
    got = visual_scores(torch.tensor([[cx, cy, w, h]]), g)[0]
    b = np.array([cx, cy, w, h], np.float32) * g  # Visual_Target_Relation_Score_Generator, line by line
    b[2], b[3] = max(b[2], 1), max(b[3], 1)
    want = np.zeros((g, g, 4), np.float32)
    for j in range(g):
        for i in range(g):
            want[j, i] = [(i - b[0]) / g, (j - b[1]) / g, 1 / b[2], 1 / b[3]]
    assert np.allclose(got.numpy(), want.reshape(g * g, 4), atol=1e-6)


def test_boxes_of_masks_are_the_canvas_boxes_and_giou_is_right():
    c = canvas(0, 2, 64)
    got = box_of_masks(torch.from_numpy(c.masks)) * 64
    x, y, w, h = torch.from_numpy(c.boxes).float().unbind(1)
    assert torch.allclose(got, torch.stack([x + w / 2, y + h / 2, w, h], 1))
    a = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0]])
    b = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.8, 0.2, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([1.0, 0.0, 0.5]))
    # disjoint squares 0.4 apart: hull 0.8 x 0.2, union 0.08 -> GIoU = 0 - (0.16 - 0.08) / 0.16
    assert torch.allclose(generalized_box_iou(a, b), torch.tensor([1.0, -0.5, 0.5]))


def test_word_roles_follow_the_canvas_grammar():
    texts = ["the 7", "the largest circle", "the 7 left of the 3", "the topmost object", "the 3 below the ellipse"]
    p = _prompts(texts)
    r = word_roles(p, TOK)
    words = [[TOK.decode([int(i)]).strip() for i in row if i] for row in p]

    def named(mask, k):
        return [w for w, m in zip(words[k], mask[k][p[k] != 0].tolist(), strict=True) if m]

    assert [named(r["subject"], k) for k in range(5)] == [["7"], ["circle"], ["7"], ["object"], ["3"]]
    assert [named(r["anchor"], k) for k in range(5)] == [[], [], ["3"], [], ["ellipse"]]
    assert named(r["attribute"], 1) == ["largest"] and named(r["relation"], 2) == ["left", "of"]
    s = semantic_scores(p, TOK)[2]
    assert s[p[2] != 0].tolist() == [0.0, 1.0, 0.5, 0.5, 0.0, 0.5]  # the 7 left of the 3


def _objective(masking="referring"):
    torch.manual_seed(0)
    model = OneTower(len(TOK), 8, 64, 8, dim=32, layers=1)
    return OneRefObjective(model, TOK, Layout(64, 8, 2, 16), masking)


def test_text_mask_follows_the_reference_rule():
    obj = _objective()
    texts = ["the 7 left of the 3"] * 400 + ["the 7"] * 400
    p = _prompts(texts)
    keys = keyed.train_keys(0, 0, torch.arange(len(p)))
    new, masked = obj.text_mask(p, keys)
    r = word_roles(p, TOK)
    n = (p != 0).sum(1)
    assert torch.equal(masked.sum(1), (n * 0.4 + 0.5).long().clamp(min=1))  # 2 of 6 words, 1 of 2
    assert (masked == (r["subject"] | r["anchor"])).all()  # the subject first, then the other object
    assert torch.equal(new[~masked], p[~masked])
    share_mask = (new[masked] == obj.mask_id).float().mean()
    share_kept = (new[masked] == p[masked]).float().mean()
    assert abs(share_mask - 0.8) < 0.04 and 0.05 < share_kept < 0.16  # 80% <mask>, 10% kept (+ random hits)


def test_random_masking_masks_as_many_patches_as_referring():
    boxes = box_of_masks(torch.from_numpy(np.stack([canvas(0, i, 64).masks[0] for i in range(6)])))
    keys = keyed.train_keys(0, 0, torch.arange(6))
    ref, rnd = _objective("referring").image_mask(boxes, keys), _objective("random").image_mask(boxes, keys)
    assert torch.equal(ref.sum(1), rnd.sum(1)) and not torch.equal(ref, rnd)


def test_padding_is_hidden_from_the_tower():
    obj = _objective()
    p = _prompts(["the 7", "the largest circle"])
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = obj.model(pixels, p)
        obj.model.word.weight[0] += 1.0  # what a padded position would carry, were it seen
        b = obj.model(pixels, p)
        other = torch.where(p == 0, 7, p)  # a real word where the padding was is seen
        c = obj.model(pixels, other)
    assert torch.allclose(a["box"], b["box"], atol=1e-6) and torch.allclose(a["visu_sim"], b["visu_sim"], atol=1e-6)
    assert not torch.allclose(a["box"], c["box"])
