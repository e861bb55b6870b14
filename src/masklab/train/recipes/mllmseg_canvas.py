"""MLLMSeg on the canvas world. Launch: ``masklab train --recipe mllmseg-canvas --out runs/mllmseg``.

The tiny InternVL of ``text4seg-canvas`` with MLLMSeg's light mask decoder (:mod:`masklab.seg.models.mllmseg`),
which fuses the ViT's patch features with the LLM's states and predicts the pixel mask directly
(:mod:`masklab.objectives.mllmseg`: LM loss on ``[SEG]`` + focal + dice).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.mllmseg import MLLMSeg
from masklab.seg.models import vlm
from masklab.seg.models.mllmseg import MLLMSegConfig, MLLMSegForSegmentation
from masklab.train.recipes.base import register
from masklab.train.recipes.seg_canvas import CanvasSegRecipe


@dataclass
class MLLMSegRecipe(CanvasSegRecipe):
    answer_format = "seg-token"  # the answer is [SEG]
    answer_len: int = 2  # [SEG] <eos>

    def build_objective(self, tokenizer):
        seg = tokenizer.convert_tokens_to_ids("[SEG]")
        heads = max(1, self.vision_dim // 16)  # 16-wide heads in the decoder
        config = vlm.vlm_config(self.size, tokenizer, MLLMSegConfig, seg_token_id=seg, decoder_heads=heads)
        return MLLMSeg(vlm.build(config, self.seed, MLLMSegForSegmentation), tokenizer, self.layout)


@register("mllmseg-canvas", "MLLMSeg: ViT detail + LLM semantics fused by a light mask decoder, pixel masks, canvases")
def mllmseg_canvas():
    return MLLMSegRecipe()
