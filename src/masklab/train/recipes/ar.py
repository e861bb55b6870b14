"""Causal LM recipe: the reference model for generative perplexity. Launch: ``masklab train --recipe ar``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.objectives.ar import AR
from masklab.train.recipes.base import TextRecipe, register


@dataclass
class ARRecipe(TextRecipe):
    head: ClassVar[str] = "causal"
    needs_mask: ClassVar[bool] = False
    arch: str = "llama"  # causal

    def __post_init__(self):
        super().__post_init__()
        if self.arch != "llama":
            raise ValueError("next-token prediction needs a causal model: arch=llama")

    def build_objective(self, model, info):
        return AR(model, info)


@register("ar", "causal next-token LM (Llama) on stdlib code, bytes, tiny preset: reference for gen-PPL")
def ar():
    return ARRecipe(preset="tiny", tokenizer="bytes", seq_len=128, batch_size=32, steps=300, lr=3e-3, warmup=20)
