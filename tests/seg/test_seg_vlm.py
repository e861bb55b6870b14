"""The tiny InternVL and Text4Seg's objective: cached greedy decoding equals recomputing every step, the answer loss
is Hugging Face's own shifted ``labels=`` loss, and a checkpoint reloads to the same model."""

import numpy as np
import pytest
import torch

from masklab.objectives.text4seg import Text4Seg
from masklab.seg.models import vlm
from masklab.seg.models.rows import Batch, CanvasRows, Layout
from masklab.seg.models.vocab import seg_tokenizer
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

TOK = seg_tokenizer()
SIZE = vlm.VLMSize(vision_dim=32, text_dim=32, heads=2)
LAYOUT = Layout()


@pytest.fixture(scope="module")
def batch():
    return Batch.unpack(CanvasRows(0, 4, LAYOUT, "rrle", TOK)[:4], LAYOUT)


@pytest.fixture(scope="module")
def objective():
    return Text4Seg(vlm.build(vlm.vlm_config(SIZE, TOK), seed=0), TOK, LAYOUT).eval()


def test_cached_greedy_decoding_equals_recomputing_the_sequence(batch):
    config = vlm.vlm_config(SIZE, TOK)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = False  # untied: varied greedy tokens
    model = vlm.build(config, seed=0).eval()
    first = vlm.greedy_decode(model, batch.pixels, batch.prompt, -1, 12)  # no <eos>: 12 tokens per row
    eos = int(first.ids[0, 3])  # a token that row 0 emits 4th: rows then stop at different steps
    fast = vlm.greedy_decode(model, batch.pixels, batch.prompt, eos, 12)
    slow = vlm.reference_decode(model, batch.pixels, batch.prompt, eos, 12)
    n = fast.lengths
    assert len(set(n.tolist())) > 1, "the case must have rows that stop at different steps"
    assert torch.equal(n, slow.lengths) and fast.nfe == int(n.max())  # one prefill + one forward per later token
    for k in range(len(n)):
        assert torch.equal(fast.ids[k, : n[k]], slow.ids[k, : n[k]])


def test_answer_loss_is_hugging_faces_labels_loss(objective, batch):
    b = batch.trimmed()
    loss, metrics = objective(torch.cat([_row(batch, k) for k in range(4)]), torch.zeros(4, dtype=torch.long))
    ids, keep, pos = vlm.prefix(objective.model, b.prompt, b.answer)
    labels = torch.where(ids == 0, -100, ids)
    labels[:, : ids.shape[1] - b.answer.shape[1]] = -100  # only the answer is scored
    hf = objective.model(input_ids=ids, pixel_values=vlm.normalize(b.pixels), attention_mask=keep, position_ids=pos,
                         labels=labels).loss  # fmt: skip
    assert torch.allclose(loss, hf, atol=1e-5)
    assert 0 <= metrics["token_acc"] <= 1


def _row(batch, k):
    """Pack example k of a batch back into a row (the inverse of Batch.unpack)."""
    parts = [(batch.pixels[k] * 255).round().flatten(), batch.mask[k].flatten(), batch.prompt[k], batch.answer[k],
             batch.cells[k].flatten()]  # fmt: skip
    return torch.cat([p.to(torch.int16) for p in parts])[None]


def test_a_checkpoint_reloads_to_the_same_model(objective, batch, tmp_path):
    objective.save_model(tmp_path)
    other = Text4Seg(vlm.build(vlm.vlm_config(SIZE, TOK), seed=1), TOK, LAYOUT).eval()
    b = batch.trimmed()
    assert not torch.allclose(other.answer_logits(b), objective.answer_logits(b))
    other.load_model(tmp_path)  # InternVL saves language_model.model.* and loads model.language_model.*
    assert torch.equal(other.answer_logits(b), objective.answer_logits(b))


def test_recipe_overrides_are_checked():
    r = get_recipe("text4seg-canvas")
    assert apply_overrides(r, ["descriptors=plain"]).layout.answer == 704
    bad_overrides = [
        ("descriptors=polygons", "descriptors must be one of"),
        ("data=stdlib", "reads only data=canvases"),
        ("valid_world=0", "world and valid_world must differ"),
        ("patch_size=3", "multiple of 2 x patch"),
        ("answer_len=-1", "answer_len must be"),
    ]
    for bad, msg in bad_overrides:
        with pytest.raises(ValueError, match=msg):
            apply_overrides(r, [bad])
    assert np.isclose(apply_overrides(get_recipe("text4seg-bricks"), []).brick_grid, 8)
