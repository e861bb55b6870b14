"""DrBERT: BERT's MLM through an enhanced decoder used only in pretraining (:mod:`masklab.objectives.drbert`).
Launch: ``masklab train --recipe mlm-drbert decoder=layers+positions decoder_layers=2``.

The checkpoint is the plain masked LM, so every text probe and the fine-tune recipes read it as they read an
``mlm`` run; the decoder is saved beside it only to resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.drbert import DECODERS, DrBERT
from masklab.train.recipes.base import SMALL_BPE, register, seeded
from masklab.train.recipes.mlm import MLMRecipe


@dataclass
class DrBERTRecipe(MLMRecipe):
    decoder: str = "layers+positions"  # plain (BERT's head) | layers | positions | layers+positions
    decoder_layers: int = 2  # transformer blocks of the decoder (DeBERTa's EMD has 2)

    def __post_init__(self):
        super().__post_init__()
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if "layers" in self.decoder and self.decoder_layers < 1:
            raise ValueError(f"decoder_layers must be >= 1 for decoder={self.decoder!r}, got {self.decoder_layers}")
        if self.lora:
            raise ValueError("lora: DrBERT trains a new decoder beside the model; use lora=0")

    def build_objective(self, model, info):
        mix = (self.mask_frac, self.random_frac, 1.0 - self.mask_frac - self.random_frac)
        with seeded(self.seed + 1):
            return DrBERT(model, info, self.decoder, self.decoder_layers, max_len=self.seq_len,
                          prob=self.mask_prob, mix=mix)  # fmt: skip


@register("mlm-drbert", "DrBERT: BERT MLM through a pretraining-only decoder (extra layers, absolute positions)")
def mlm_drbert():
    return DrBERTRecipe(**SMALL_BPE)
