"""The canvas segmentation data: the word-level tokenizer is lossless, a packed row holds exactly the canvas, its
expression and the answer of its format, and reading a gold answer gives the grid's own mask (the oracle ceiling)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.canvases import refers_to
from masklab.seg.descriptors import (
    brick_to_mask,
    encode_bricks,
    encode_descriptors,
    grid_to_mask,
    mask_to_brick,
    mask_to_grid,
)
from masklab.seg.models.rows import Batch, CanvasRows, Layout, answer_text, example, read_answer
from masklab.seg.models.vocab import SPLIT, encode, seg_tokenizer

TOK = seg_tokenizer()
LABELS = ["others", "the 7", "the largest circle", "the 3 left of the ellipse", "the topmost object"]


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(st.lists(st.sampled_from(LABELS), min_size=5, max_size=5), min_size=1, max_size=6),
    rle=st.booleans(),
)
def test_descriptor_text_round_trips_and_runs_cost_label_words_plus_two(cells, rle):
    text = encode_descriptors(cells, rle=rle)
    ids = encode(TOK, text)
    assert TOK.decode(ids) == text  # lossless: the Fuse decoder concatenates the pieces
    if rle:  # a run "label *count" is its words, " *" and the count; "| " and "\n " are one token each
        runs = [r for row in text[5:-7].split("\n ") for r in row.split("| ")]
        rows = text.count("\n")
        assert len(ids) == 2 + sum(len(r.split(" *")[0].split()) + 2 for r in runs) + (len(runs) - rows) + rows


def test_bricks_and_expressions_round_trip():
    m = np.zeros((64, 64), bool)
    m[10:30, 5:21] = True
    text = encode_bricks([mask_to_brick(m, "the 3 below the circle", 8)])
    assert TOK.decode(encode(TOK, text)) == text
    for i in range(12):  # every expression of the canvas grammar is in the vocabulary
        _, expr, _ = example(0, i)
        assert TOK.decode(encode(TOK, expr)) == expr


def test_a_piece_outside_the_vocabulary_is_a_value_error():
    with pytest.raises(ValueError, match="outside the segmentation vocabulary.*'dog'"):
        encode(TOK, "<seg>dog *16\n</seg>")
    assert SPLIT.startswith(r"\[SEG\]")


LAYOUT = Layout(size=64, prompt=8, answer=256, grid=16)


@pytest.mark.parametrize("fmt", ["rrle", "plain", "bricks"])
def test_a_row_holds_the_canvas_its_expression_and_its_answer(fmt):
    layout = Layout(answer=704) if fmt == "plain" else LAYOUT
    rows = CanvasRows(0, 6, layout, fmt, TOK)
    b = Batch.unpack(rows[torch.tensor([4, 1])], layout)
    for k, i in enumerate((4, 1)):
        c, expr, n = example(0, i)
        assert refers_to(expr, c.masks, c.labels) == [n]  # the example's expression names its object
        assert np.array_equal(b.pixels[k].permute(1, 2, 0).numpy() * 255, np.rint(c.image * 255))
        assert np.array_equal(b.mask[k].numpy(), c.masks[n])
        assert TOK.decode(b.prompt[k][b.prompt[k] != 0]) == expr and b.prompt[k, -1] != 0  # left-padded
        answer = b.answer[k][b.answer[k] != 0].tolist()
        assert answer[-1] == TOK.eos_token_id
        assert TOK.decode(answer[:-1]) == answer_text(fmt, c, expr, n, layout)
        assert np.array_equal(b.cells[k].numpy(), mask_to_grid(c.masks[n], 16) == "object")
    assert torch.equal(rows[1:3], torch.stack([rows[1], rows[2]]))


def test_reading_a_gold_answer_gives_the_descriptors_own_mask():
    """The ceiling of each format: the gold R-RLE/plain answer reads back as grid_to_mask(mask_to_grid(mask)) and
    the gold brick as brick_to_mask(mask_to_brick(mask))."""
    c, expr, n = example(0, 7)
    m = c.masks[n]
    ceiling = grid_to_mask(mask_to_grid(m, 16, label=expr), (64, 64))
    for fmt in ("rrle", "plain"):
        pred, ok = read_answer(fmt, answer_text(fmt, c, expr, n, LAYOUT), LAYOUT)
        assert ok and np.array_equal(pred, ceiling)
    pred, ok = read_answer("bricks", answer_text("bricks", c, expr, n, LAYOUT, 8), LAYOUT)
    assert ok and np.array_equal(pred, brick_to_mask(mask_to_brick(m, expr, 8), (64, 64)))
    pred, ok = read_answer("rrle", "<seg>others *3| the 7", LAYOUT)  # cut-off generation: read leniently
    cells = np.full((16, 16), "others")
    cells[0, 3] = "the 7"  # the count-less run reads as 1, the missing cells and rows as background
    assert not ok and np.array_equal(pred, grid_to_mask(cells, (64, 64)))
    pred, ok = read_answer("bricks", "<p>the 7</p><box>[3, 4", LAYOUT)
    assert not ok and not pred.any()


def test_bad_layouts_and_overflowing_answers_are_value_errors():
    with pytest.raises(ValueError, match="size must be at least 64"):
        Layout(size=32)
    with pytest.raises(ValueError, match="format must be one of"):
        CanvasRows(0, 3, LAYOUT, "polygon", TOK)
    with pytest.raises(ValueError, match="answer of example 0 .* more than its slot of 40"):
        CanvasRows(0, 3, Layout(answer=40), "rrle", TOK)[0]
    with pytest.raises(IndexError):
        CanvasRows(0, 3, LAYOUT, "rrle", TOK)[3]
