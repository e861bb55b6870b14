"""MLLMSeg's light mask decoder: DySample starts as bilinear upsampling, the pixel rearrangement is the reference's,
the losses are their formulas, the mask reads the segmentation token, and the evaluation scores what it is given."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from masklab.objectives.mllmseg import MLLMSeg
from masklab.seg.models import vlm
from masklab.seg.models.common import Segmented
from masklab.seg.models.mllmseg import DySample, MLLMSegConfig, MLLMSegForSegmentation, dice_loss, sigmoid_focal_loss
from masklab.seg.models.rows import Batch, CanvasRows, Layout
from masklab.seg.models.vocab import seg_tokenizer

TOK = seg_tokenizer()
LAYOUT = Layout(answer=2)


def _model(seed=0):
    config = vlm.vlm_config(vlm.VLMSize(vision_dim=32, text_dim=32, heads=2), TOK, MLLMSegConfig,
                            seg_token_id=TOK.convert_tokens_to_ids("[SEG]"), decoder_heads=2)  # fmt: skip
    return vlm.build(config, seed, MLLMSegForSegmentation).eval()


def test_dysample_with_zero_offsets_is_bilinear_upsampling():
    up = DySample(8, scale=2, groups=4)
    torch.nn.init.zeros_(up.offset.weight)
    x = torch.randn(2, 8, 5, 7)
    assert torch.allclose(up(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), atol=1e-5)


def test_pixel_shuffle_is_the_references_rearrangement():
    """RESDecoder turns (n, 14*14, 32, 32) into (n, 1, 448, 448) by reshape/permute; at our sizes 4*4 over 16."""
    x = torch.randn(2, 16, 16, 16)
    ref = x.permute(0, 2, 3, 1).reshape(-1, 16, 16, 4, 4).permute(0, 1, 3, 2, 4).reshape(-1, 1, 64, 64)
    assert torch.equal(F.pixel_shuffle(x, 4), ref)


def test_focal_and_dice_losses_are_their_formulas():
    z, t = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    p = 1 / (1 + math.exp(-2.0))
    q = 1 / (1 + math.exp(1.0))  # probability of the negative pixel being foreground
    focal = (0.25 * -math.log(p) * (1 - p) ** 2 + 0.75 * -math.log(1 - q) * q**2) / 2  # Lin et al. Eq. 5, mean
    assert math.isclose(float(sigmoid_focal_loss(z, t)), focal, rel_tol=1e-5)
    assert math.isclose(float(dice_loss(z, t)), 1 - (2 * p + 1) / (p + q + 1 + 1), rel_tol=1e-5)


def test_the_mask_reads_the_segmentation_tokens_state():
    model = _model()
    b = Batch.unpack(CanvasRows(0, 2, LAYOUT, "seg-token", TOK)[:2], LAYOUT)
    ids, keep, pos = vlm.prefix(model, b.prompt)
    px = vlm.normalize(b.pixels)
    with torch.no_grad():
        lm, mask = model.segment_forward(ids, px, keep, pos, seg_at=ids.shape[1] - 1)
        assert mask.shape == (2, 1, 64, 64) and lm.shape[:2] == ids.shape
        other = ids.clone()
        other[:, -1] = TOK.convert_tokens_to_ids("largest")  # another last prompt word: another query
        assert not torch.allclose(model.segment_forward(other, px, keep, pos, seg_at=ids.shape[1] - 1)[1], mask)


def test_checkpoint_round_trip_and_evaluation_scores_the_masks_it_is_given(tmp_path):
    model = _model()
    objective = MLLMSeg(model, TOK, LAYOUT)
    rows = CanvasRows(0, 6, LAYOUT, "seg-token", TOK)
    loss, m = objective(rows[:2], torch.zeros(2, dtype=torch.long))
    assert torch.allclose(loss, m["ce"] + m["focal"] + m["dice"])
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()  # BatchNorm statistics included
    b = objective.batch(rows[:2])
    ids, keep, pos = vlm.prefix(model, b.prompt)
    with torch.no_grad():
        args = (ids, vlm.normalize(b.pixels), keep, pos)
        assert torch.equal(again.segment_forward(*args, seg_at=-1)[1], model.segment_forward(*args, seg_at=-1)[1])

    def oracle(b):  # the true masks: gIoU and cIoU are 1
        n = torch.ones(len(b.mask), dtype=torch.long)
        return Segmented(b.mask, n, n, torch.ones(len(b.mask), dtype=torch.bool))

    objective.segment = oracle
    out = objective.evaluate(rows, batch_size=4)
    assert out["gIoU"] == out["cIoU"] == out["Pr@0.5"] == 1.0 and out["examples"] == 6

    def empty(b):  # no pixels: every IoU is 0 (a canvas target is never empty)
        s = oracle(b)
        return Segmented(torch.zeros_like(b.mask), s.nfe, s.tokens, s.valid)

    objective.segment = empty
    assert objective.evaluate(rows, batch_size=4)["gIoU"] == 0.0
    with pytest.raises(ValueError, match="weights must be three"):
        MLLMSeg(model, TOK, LAYOUT, weights=(1.0, 1.0))
