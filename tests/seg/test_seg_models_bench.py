"""benchmarks/seg_models.py's image check: swapping images moves only the image bytes, one example down, and the
loss it compares is unchanged exactly when every example has the same picture (nothing to read) and changed when a
model that reads pixels (a fresh STAMP model: its logits depend on the image) gets other pictures."""

import importlib.util
from pathlib import Path

import torch

from masklab.objectives.stamp import Stamp
from masklab.seg.models import vlm
from masklab.seg.models.rows import CanvasRows, Layout
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
