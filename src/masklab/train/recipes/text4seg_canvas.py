"""Text4Seg and Text4Seg++ on the canvas world. Launch:
``masklab train --recipe text4seg-canvas --out runs/t4s`` (R-RLE descriptors), ``descriptors=plain`` for the
uncompressed baseline, or ``--recipe text4seg-bricks`` for next-brick prediction.

A tiny InternVL (:mod:`masklab.seg.models.vlm`) learns to answer a referring expression with the object's mask as
text (:mod:`masklab.objectives.text4seg`); the held-out evaluation generates the answers and reports gIoU and cIoU.
``benchmarks/seg_models.py`` compares the formats and the other canvas models over seeds (docs/seg_models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.text4seg import TEXT_FORMATS, Text4Seg
from masklab.seg.models import vlm
from masklab.train.recipes.base import register
from masklab.train.recipes.seg_canvas import CanvasSegRecipe


@dataclass
class Text4SegRecipe(CanvasSegRecipe):
    descriptors: str = "rrle"  # rrle (Text4Seg, R-RLE), plain (uncompressed descriptors), bricks (Text4Seg++)
    brick_grid: int = 8  # bricks: cells per box side at most (8: as many tokens as 16 x 16 R-RLE on canvases)

    def __post_init__(self):
        if self.descriptors not in TEXT_FORMATS:
            raise ValueError(f"descriptors must be one of {TEXT_FORMATS}, got {self.descriptors!r}")
        if self.brick_grid < 1:
            raise ValueError(f"brick_grid must be positive, got {self.brick_grid}")
        super().__post_init__()

    @property
    def answer_format(self) -> str:  # type: ignore[override]
        return self.descriptors

    def row_options(self) -> dict:
        return {"brick_grid": self.brick_grid}

    def build_objective(self, tokenizer):
        model = vlm.build(vlm.vlm_config(self.size, tokenizer), self.seed)
        return Text4Seg(model, tokenizer, self.layout, self.descriptors)


@register("text4seg-canvas", "Text4Seg: a tiny InternVL writes 16x16 R-RLE descriptors (descriptors=plain|bricks)")
def text4seg_canvas():
    return Text4SegRecipe()


@register("text4seg-bricks", "Text4Seg++ next-brick prediction: box + 8x8 cells as text, on canvases")
def text4seg_bricks():
    return Text4SegRecipe(descriptors="bricks")
