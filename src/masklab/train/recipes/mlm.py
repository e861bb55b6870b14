"""BERT masked language modelling recipes. Launch: ``masklab train --recipe mlm``."""

from __future__ import annotations

from dataclasses import dataclass

from masklab.corrupt.tokens import check_prob
from masklab.objectives.mlm import MLM
from masklab.train.recipes.base import SMALL_BPE, TextRecipe, register


@dataclass
class MLMRecipe(TextRecipe):
    mask_prob: float = 0.15  # BERT's selection rate
    mask_frac: float = 0.8  # of selected: mask token
    random_frac: float = 0.1  # of selected: random token (the rest stay unchanged)

    def __post_init__(self):
        super().__post_init__()
        for k in ("mask_prob", "mask_frac", "random_frac"):
            check_prob(k, getattr(self, k))
        if self.mask_frac + self.random_frac > 1:
            raise ValueError("mask_frac + random_frac must be <= 1")
        if self.arch != "modernbert":
            raise ValueError("MLM needs a bidirectional model: arch=modernbert")

    def build_objective(self, model, info):
        mix = (self.mask_frac, self.random_frac, 1.0 - self.mask_frac - self.random_frac)
        return MLM(model, info, prob=self.mask_prob, mix=mix)


@register("mlm", "BERT 80/10/10 masked LM on stdlib code, BPE-4096, small preset")
def mlm():
    return MLMRecipe(**SMALL_BPE)
