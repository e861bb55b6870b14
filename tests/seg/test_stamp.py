"""STAMP's all-mask prediction: the mixed attention is the paper's rule, text stays causal, mask tokens see each
other, and the two-pass inference on the KV cache equals the one-pass training forward."""

import pytest
import torch
from transformers import AutoModel

from masklab.attention import to_dense
from masklab.objectives.stamp import Stamp
from masklab.seg.models import vlm
from masklab.seg.models.rows import Batch, CanvasRows, Layout
from masklab.seg.models.stamp import StampConfig, StampForSegmentation, stamp_attention
from masklab.seg.models.vocab import seg_tokenizer

TOK = seg_tokenizer()
LAYOUT = Layout(answer=2, grid=4)  # a 4 x 4 mask grid keeps the sequences short


def _model(seed=0):
    ids = TOK.convert_tokens_to_ids
    config = vlm.vlm_config(vlm.VLMSize(vision_dim=32, text_dim=32, heads=2), TOK, StampConfig,
                            mask_token_id=ids("<mask>"), seg_token_id=ids("<seg>"), mask_grid=4)  # fmt: skip
    return vlm.build(config, seed, StampForSegmentation).eval()


@pytest.fixture(scope="module")
def case():
    b = Batch.unpack(CanvasRows(0, 3, LAYOUT, "seg", TOK)[:3], LAYOUT)
    return _model(), b


def test_mixed_attention_is_causal_text_and_a_bidirectional_mask_block():
    L, s = 9, 5
    dense = to_dense(stamp_attention(s), L, L)[0, 0]
    for q in range(L):
        for kv in range(L):
            assert bool(dense[q, kv]) == (kv <= q or (q >= s and kv >= s)), (q, kv)


def test_two_passes_on_the_cache_equal_the_training_forward(case):
    model, b = case
    ids, keep, pos = vlm.prefix(model, b.prompt, model.mask_ids(3, b.prompt.device))
    with torch.no_grad():
        full = model.all_mask_forward(ids, vlm.normalize(b.pixels), keep, pos)
        short_ids, short_keep, short_pos = vlm.prefix(model, b.prompt)
        cached, said = model.predict(vlm.normalize(b.pixels), short_ids, short_keep, short_pos)
    assert torch.allclose(cached, full.mask_logits, atol=1e-5)
    assert torch.equal(said, full.text_logits[:, -2].argmax(-1) == model.config.seg_token_id)


def test_text_is_not_changed_by_the_mask_tokens_which_see_each_other(case):
    model, b = case
    ids, keep, pos = vlm.prefix(model, b.prompt, model.mask_ids(3, b.prompt.device))
    with torch.no_grad():
        out = model.all_mask_forward(ids, vlm.normalize(b.pixels), keep, pos)
        n = ids.shape[1] - model.cells  # the text part: image, prompt, <seg>
        alone = model(input_ids=ids[:, :n], pixel_values=vlm.normalize(b.pixels), attention_mask=keep[:, :n],
                      position_ids=pos[:, :n]).logits  # fmt: skip
        assert torch.allclose(out.text_logits, alone, atol=1e-5)  # a plain causal pass over the text alone
        other = ids.clone()
        other[:, -1] = TOK.convert_tokens_to_ids("others")  # change only the last mask token
        changed = model.all_mask_forward(other, vlm.normalize(b.pixels), keep, pos)
    assert not torch.allclose(changed.mask_logits[:, 0], out.mask_logits[:, 0])  # the first mask token saw it
    assert torch.allclose(changed.text_logits, out.text_logits, atol=1e-6)


def test_objective_loss_and_checkpoint(case, tmp_path):
    model, b = case
    objective = Stamp(model, TOK, LAYOUT)
    rows = CanvasRows(0, 3, LAYOUT, "seg", TOK)[:3]
    loss, metrics = objective(rows, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(loss, metrics["text_loss"] + metrics["mask_loss"])
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path)  # importing masklab.seg.models.stamp registered the type
    assert isinstance(again, StampForSegmentation)
    short = vlm.prefix(model, b.prompt)
    assert torch.equal(again.eval().predict(vlm.normalize(b.pixels), *short)[0],
                       model.predict(vlm.normalize(b.pixels), *short)[0])  # fmt: skip
    with pytest.raises(ValueError, match="mask grid 4 is not the rows' grid 16"):
        Stamp(model, TOK, Layout())
