"""Marten's VQAMask on canvases (masklab.seg.marten, masklab.objectives.marten): every question names exactly one
object and the answer is its class word, the mask target is the union of all objects, the answer never depends on
the mask generator (it is discarded at inference), padding is never read, and the mask loss is BCE + dice."""

import pytest
import torch
import torch.nn.functional as F

from masklab.data.canvases import canvas, refers_to
from masklab.objectives.marten import MartenObjective
from masklab.seg.marten import QUESTIONS, MartenLayout, MartenRows, Reader, question_of
from masklab.seg.models.vocab import seg_tokenizer

TOK = seg_tokenizer(64)
LAYOUT = MartenLayout(64)


def test_each_question_names_one_object_and_never_its_class():
    for i in range(12):
        c = canvas(2, i, 64)
        question, n = question_of(c)
        assert question in QUESTIONS and refers_to(question, c.masks, c.labels) == [n]
        assert c.labels[n] not in question.split()


def test_rows_hold_the_image_the_union_of_masks_the_question_and_the_answer_word():
    rows = MartenRows(2, 6, LAYOUT, TOK)
    b = LAYOUT.unpack(rows[0:6])
    for k in range(6):  # every canvas of world 2 here has a question, so row k is canvas k
        c = canvas(2, k, 64)
        question, n = question_of(c)
        assert torch.equal(b["mask"][k], torch.from_numpy(c.masks.any(0)))
        assert torch.allclose(b["pixels"][k].permute(1, 2, 0), torch.from_numpy(c.image), atol=1 / 255)
        q = b["question"][k]
        assert TOK.decode(q[q != 0].tolist()) == question and (q[: -len(question.split())] == 0).all()
        assert TOK.decode([int(b["answer"][k])]).strip() == c.labels[n]


def test_the_answer_never_reads_the_mask_generator_or_the_padding():
    torch.manual_seed(0)
    with_head, without = Reader(len(TOK), 4, mask_head=True).eval(), Reader(len(TOK), 4, mask_head=False).eval()
    missing, unexpected = without.load_state_dict(with_head.state_dict(), strict=False)
    assert not missing and all(k.startswith("mask_head.") for k in unexpected)
    b = LAYOUT.unpack(MartenRows(2, 4, LAYOUT, TOK)[0:4])
    with torch.no_grad():
        logits, cells = with_head(b["pixels"], b["question"])
        assert torch.equal(logits, without(b["pixels"], b["question"])[0])  # discarded at inference
        assert with_head.mask_head(cells).shape == (4, 32, 32)
        with_head.word.weight[0] = torch.randn(64)  # <pad> is hidden from every attention
        assert torch.allclose(with_head(b["pixels"], b["question"])[0], logits, atol=1e-5)


def test_loss_is_answer_ce_plus_weighted_bce_and_dice():
    torch.manual_seed(0)
    rows = MartenRows(2, 4, LAYOUT, TOK)[0:4]
    objective = MartenObjective(Reader(len(TOK), 4, mask_head=True), LAYOUT, mask_weight=2.0)
    b = LAYOUT.unpack(rows)
    with torch.no_grad():
        loss, _ = objective(rows, torch.zeros(4))
        logits, cells = objective.model(b["pixels"], b["question"])
        m = F.interpolate(objective.model.mask_head(cells)[:, None], size=(64, 64), mode="bilinear")[:, 0]
    t = b["mask"].float()
    bce = F.binary_cross_entropy_with_logits(m, t, reduction="none").mean((1, 2))
    p = m.sigmoid()
    dice = 1 - (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    expected = F.cross_entropy(logits, b["answer"]) + 2.0 * (bce + dice).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="mask_weight"):
        MartenObjective(Reader(len(TOK), 4, mask_head=False), LAYOUT, mask_weight=1.0)


def test_evaluation_reports_accuracy_and_the_majority_floor():
    torch.manual_seed(0)
    rows = MartenRows(2, 8, LAYOUT, TOK)[0:8]
    out = MartenObjective(Reader(len(TOK), 4, mask_head=False), LAYOUT, 0.0).evaluate(rows, batch_size=8)
    answers = LAYOUT.unpack(rows)["answer"].tolist()
    assert out["examples"] == 8 and out["majority"] == max(answers.count(a) for a in answers) / 8
    assert 0 <= out["acc"] <= 1 and "mask_iou" not in out
