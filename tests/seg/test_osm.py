"""OSM (masklab.seg.osm, masklab.objectives.osm): the answer words spell and read back exactly, the word decoder
is causal and greedy decoding takes the argmax of its own teacher-forced logits, the MaskQFormer's queries see
only the features inside the mask (OSM's mask attention), and the generative loss is the next-token cross-entropy
of the spelled class name."""

import pytest
import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.data.canvases import CATEGORIES
from masklab.objectives.osm import OSMObjective, proposals
from masklab.seg.mask_adapter import MaskLayout, MaskRows
from masklab.seg.metrics import iou
from masklab.seg.osm import (
    BOS,
    EOS,
    LABEL_WORDS,
    MAX_LEN,
    PAD,
    MaskQFormer,
    OSMClassifier,
    WordDecoder,
    read,
    spell,
    word_targets,
)


def test_every_class_is_one_distinct_word_that_reads_back():
    assert len(set(LABEL_WORDS)) == len(CATEGORIES) == 14
    assert LABEL_WORDS[7] == "seven" and LABEL_WORDS[CATEGORIES.index("circle")] == "circle"
    for c, w in enumerate(LABEL_WORDS):
        ids = word_targets(torch.tensor([c]))[0]
        assert ids.shape == (MAX_LEN,) and read(ids) == w and read(spell(w)) == w
        assert ids.tolist()[len(w)] == EOS and all(i == PAD for i in ids.tolist()[len(w) + 1 :])
    assert (word_targets(torch.tensor([-1])) == PAD).all()  # an empty slot answers nothing
    with pytest.raises(ValueError, match="word"):
        spell("Seven")


def _decoder():
    torch.manual_seed(0)
    return WordDecoder(16, layers=2, heads=2, prefix=3).eval()


def test_decoder_is_causal():
    d, prefix = _decoder(), torch.randn(4, 3, 16)
    x = torch.randint(3, 29, (4, 7))
    y = x.clone()
    y[:, 4] = (y[:, 4] - 3 + 1) % 26 + 3  # another letter at position 4
    a, b = d(prefix, x), d(prefix, y)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)  # what came before does not see it
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_greedy_generation_takes_the_argmax_of_its_own_teacher_forced_logits():
    d, prefix = _decoder(), torch.randn(6, 3, 16)
    out = d.generate(prefix)  # (6, MAX_LEN)
    inputs = torch.cat([torch.full((6, 1), BOS), out[:, :-1]], 1)
    argmax = d(prefix, inputs).argmax(-1)
    for row, best in zip(out.tolist(), argmax.tolist(), strict=True):
        end = row.index(EOS) if EOS in row else len(row)
        assert row[: end + 1] == best[: end + 1]  # each letter is the argmax given the letters before it
        assert all(i == PAD for i in row[end + 1 :])  # nothing after <eos>


def test_mask_attention_reads_only_the_features_inside_the_mask():
    torch.manual_seed(0)
    q = MaskQFormer(8, 16, queries=4)
    f = torch.randn(2, 8, 16, 16)
    masks = torch.zeros(2, 3, 64, 64, dtype=torch.bool)
    masks[:, 0, :20, :20] = True  # cells [0, 5) x [0, 5) of the 16 x 16 map
    masks[:, 1, 30:50, 10:60] = True
    g = f.clone()
    g[:, :, 8:, 8:] += torch.randn(2, 8, 8, 8)  # features the first mask does not cover
    a, b = q(f, masks), q(g, masks)
    assert a.shape == (2, 3, 4, 16)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6)
    assert not torch.allclose(a[:, 1], b[:, 1])
    everything = torch.ones(2, 1, 64, 64, dtype=torch.bool)  # an empty mask (slot 2) sees every cell
    assert torch.allclose(a[:, 2], q(f, everything)[:, 0], atol=1e-6)


def test_generative_loss_is_the_next_letter_cross_entropy_of_the_class_name():
    torch.manual_seed(0)
    model = OSMClassifier("generate", width=16, queries=2, layers=1)
    tokens = torch.randn(2, 3, 2, 16)
    labels = torch.tensor([[7, 10, -1], [13, -1, -1]])  # seven, circle, ellipse
    with torch.no_grad():
        loss, right = model.loss(tokens, labels)
    total, count = 0.0, 0
    for t, c in ((tokens[0, 0], 7), (tokens[0, 1], 10), (tokens[1, 0], 13)):
        ids = spell(LABEL_WORDS[c])  # letters then <eos>
        with torch.no_grad():
            logp = F.log_softmax(model.decoder(t[None], torch.tensor([[BOS, *ids[:-1]]])), -1)[0]
        total -= sum(float(logp[i, j]) for i, j in enumerate(ids))
        count += len(ids)
    assert loss.item() == pytest.approx(total / count, rel=1e-5)
    assert right.shape == (3,)


def test_closed_head_answers_class_words():
    torch.manual_seed(0)
    model = OSMClassifier("closed", width=16, queries=2)
    answers = model.predict(torch.randn(5, 2, 16))
    assert len(answers) == 5 and set(answers) <= set(LABEL_WORDS)
    with pytest.raises(ValueError, match="head"):
        OSMClassifier("open")


def test_proposals_reach_the_asked_iou_and_are_keyed():
    layout = MaskLayout(64, slots=5)
    b = layout.unpack(MaskRows(3, 4, layout)[0:4])
    keys = keyed.eval_keys(0, torch.arange(4))
    target = torch.full(b["labels"].shape, 0.75)
    masks, ious = proposals(b["sdf"], keys, target, stream=1)
    again, _ = proposals(b["sdf"], keys, target, stream=1)
    other, _ = proposals(b["sdf"], keys, target, stream=2)
    assert torch.equal(masks, again) and not torch.equal(masks, other)
    valid = b["labels"] >= 0
    measured = iou(masks[valid], (b["sdf"] > 0)[valid])
    assert torch.allclose(measured.float(), ious[valid], atol=1e-6)
    assert (ious[valid] - 0.75).abs().max() < 0.05


def test_evaluation_counts_every_object_and_names_no_unknown_word_for_the_closed_head():
    torch.manual_seed(0)
    layout = MaskLayout(64, slots=5)
    rows = MaskRows(3, 4, layout)[0:4]
    objective = OSMObjective(OSMClassifier("closed", width=16, queries=2), layout)
    out = objective.evaluate(rows, batch_size=4)
    assert out["n@1"] == int((layout.unpack(rows)["labels"] >= 0).sum())
    assert out["unknown"] == 0.0 and 0.0 <= out["acc@1"] <= 1.0
