"""benchmarks/seg_models.py's image check: swapping images moves only the image bytes, one example down, and the
loss it compares is unchanged exactly when every example has the same picture (nothing to read) and changed when a
model that reads pixels (a fresh STAMP model: its logits depend on the image) gets other pictures.

Its decode-time mode: forced-length generation emits exactly the gold answer's tokens in one cached forward per
token (NFE = length) even where the model would write ``<eos>`` first, token for token what recomputing the whole
sequence at every step gives, and the gold length is the tokenized answer text plus ``<eos>``."""

import importlib.util
from pathlib import Path

import pytest
import torch

from masklab.objectives.stamp import Stamp
from masklab.seg.models import vlm
from masklab.seg.models.rows import Batch, CanvasRows, Layout, answer_text, example
from masklab.seg.models.stamp import StampConfig, StampForSegmentation
from masklab.seg.models.vocab import seg_tokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seg_models.py"
spec = importlib.util.spec_from_file_location("seg_models_benchmark", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

TOK = seg_tokenizer()
LAYOUT = Layout(answer=2, grid=4)


def _objective() -> Stamp:
    ids = TOK.convert_tokens_to_ids
    config = vlm.vlm_config(vlm.VLMSize(vision_dim=32, text_dim=32, heads=2), TOK, StampConfig,
                            mask_token_id=ids("<mask>"), seg_token_id=ids("<seg>"), mask_grid=4)  # fmt: skip
    return Stamp(vlm.build(config, 0, StampForSegmentation), TOK, LAYOUT).eval()


def test_swap_images_moves_each_image_one_example_down_and_nothing_else():
    rows = CanvasRows(0, 4, LAYOUT, "seg", TOK)[:4]
    out = bench.swap_images(rows, LAYOUT)
    a, b = LAYOUT.spans["image"]
    for i in range(4):
        assert torch.equal(out[i, a:b], rows[i - 1, a:b])
        assert torch.equal(out[i, :a], rows[i, :a]) and torch.equal(out[i, b:], rows[i, b:])


def test_image_dependence_is_equal_without_a_picture_to_read_and_differs_with_one():
    objective = _objective()
    rows = CanvasRows(0, 4, LAYOUT, "seg", TOK)[:4]
    own, other = bench.image_dependence(objective, rows)
    assert own != other  # distinct pictures: a model that reads pixels scores differently
    a, b = LAYOUT.spans["image"]
    same = rows.clone()
    same[:, a:b] = rows[0, a:b]  # one picture for every example: swapping changes no input
    own, other = bench.image_dependence(objective, same)
    assert own == other


SMALL = Layout(answer=64, grid=4)  # plain descriptors of a 4 x 4 grid: ~40 tokens, short enough to decode here


def _text_model():
    config = vlm.vlm_config(vlm.VLMSize(vision_dim=32, text_dim=32, heads=2), TOK)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = False  # untied: varied greedy tokens
    return vlm.build(config, 0).eval()


def test_gold_lengths_count_the_answer_text_and_its_eos():
    for fmt in ("rrle", "plain"):
        rows = CanvasRows(1, 3, SMALL, fmt, TOK)[:3]
        for i, n in enumerate(bench.gold_lengths(rows, SMALL).tolist()):
            c, expr, k = example(1, i)
            assert n == len(TOK(answer_text(fmt, c, expr, k, SMALL), add_special_tokens=False).input_ids) + 1


def test_forced_decoding_emits_exactly_the_gold_length_past_an_eos():
    model = _text_model()
    rows = CanvasRows(1, 2, SMALL, "plain", TOK)[:2]
    b = Batch.unpack(rows, SMALL)
    length = int(bench.gold_lengths(rows, SMALL)[0])
    forced = bench.forced_decode(model, b.pixels, b.prompt, length)
    assert forced.ids.shape == (2, length) and forced.nfe == length
    assert forced.lengths.tolist() == [length, length]
    eos = int(forced.ids[0, 0])  # taken as the end token, greedy decoding stops row 0 after one token
    assert int(vlm.greedy_decode(model, b.pixels, b.prompt, eos, length).lengths[0]) == 1


def test_forced_decoding_is_the_greedy_sequence_recomputed_at_every_step():
    model = _text_model()
    b = Batch.unpack(CanvasRows(1, 2, SMALL, "rrle", TOK)[:2], SMALL)
    forced = bench.forced_decode(model, b.pixels, b.prompt, 9)
    assert torch.equal(forced.ids, vlm.reference_decode(model, b.pixels, b.prompt, -1, 9).ids)


def test_decode_times_time_each_example_at_its_gold_length_in_each_format():
    rows = {f: CanvasRows(1, 2, SMALL, f, TOK)[:2] for f in ("rrle", "plain")}
    layouts = {"rrle": SMALL, "plain": SMALL}
    res = bench.decode_times(_text_model(), rows, layouts, 2, 1)
    for f in rows:
        assert res[f][0] == bench.gold_lengths(rows[f], SMALL).tolist()
        assert len(res[f][1]) == 2 and all(ms > 0 for ms in res[f][1])
    other = {"rrle": rows["rrle"], "plain": CanvasRows(0, 2, SMALL, "plain", TOK)[:2]}  # other canvases
    with pytest.raises(ValueError, match="example 0 differs"):
        bench.decode_times(_text_model(), other, layouts, 2, 1)
