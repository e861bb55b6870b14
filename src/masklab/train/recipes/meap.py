"""MEAP recipe: causal LM with random mask tokens in its input. Launch: ``masklab train --recipe meap``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.corrupt.tokens import check_prob
from masklab.objectives.meap import MEAP
from masklab.train.recipes.base import TextRecipe, register


@dataclass
class MEAPRecipe(TextRecipe):
    head: ClassVar[str] = "causal"
    arch: str = "llama"  # causal
    mask_prob: float = 0.15  # MEAP's pre-training mask ratio

    def __post_init__(self):
        super().__post_init__()
        check_prob("mask_prob", self.mask_prob)
        if self.arch != "llama":
            raise ValueError("MEAP trains a causal model: arch=llama")

    def build_objective(self, model, info):
        return MEAP(model, info, prob=self.mask_prob)


@register("meap", "MEAP: causal LM (Llama) with 15% mask tokens in the input, stdlib code, bytes, tiny preset")
def meap():
    return MEAPRecipe(preset="tiny", tokenizer="bytes", seq_len=128, batch_size=32, steps=300, lr=3e-3, warmup=20)
