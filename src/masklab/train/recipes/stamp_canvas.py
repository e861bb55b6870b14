"""STAMP's all-mask prediction on the canvas world. Launch: ``masklab train --recipe stamp-canvas --out runs/stamp``.

The tiny InternVL of ``text4seg-canvas`` with STAMP's mask head (:mod:`masklab.seg.models.stamp`): after the text
answer ``<seg>``, one forward pass over 16 x 16 mask tokens predicts every cell (:mod:`masklab.objectives.stamp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.stamp import Stamp
from masklab.seg.models import vlm
from masklab.seg.models.stamp import StampConfig, StampForSegmentation
from masklab.train.recipes.base import register
from masklab.train.recipes.seg_canvas import CanvasSegRecipe


@dataclass
class StampRecipe(CanvasSegRecipe):
    answer_format = "seg"  # the text answer is the segmentation token alone
    answer_len: int = 2  # <seg> <eos>

    def build_objective(self, tokenizer):
        ids = tokenizer.convert_tokens_to_ids
        config = vlm.vlm_config(self.size, tokenizer, StampConfig, mask_token_id=ids("<mask>"),
                                seg_token_id=ids("<seg>"), mask_grid=self.grid)  # fmt: skip
        return Stamp(vlm.build(config, self.seed, StampForSegmentation), tokenizer, self.layout)


@register("stamp-canvas", "STAMP all-mask prediction: <seg>, then every 16x16 cell in one pass, on canvases")
def stamp_canvas():
    return StampRecipe()
