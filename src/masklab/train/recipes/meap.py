"""MEAP recipe: causal LM with random mask tokens in its input. Launch: ``masklab train --recipe meap``.

``sft=true`` fine-tunes on prompt/response pairs with MEAP-SFT (each example duplicated, 10% of the copy's
response masked, loss on the original's response and the copy's masked tokens): ``masklab train --recipe meap
sft=true data=stdlib-sft seq_len=256`` (``data``: a .jsonl of {"prompt", "response"} or stdlib-sft), usually with
``init=PATH`` (a pretrained causal LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.corrupt.tokens import check_prob
from masklab.objectives.meap import MEAP
from masklab.train.recipes.base import Task, TextRecipe, register

PRETRAIN_PROB, SFT_PROB = 0.15, 0.1  # MEAP's mask ratios: pre-training, and the duplicated response in SFT


@dataclass
class MEAPRecipe(TextRecipe):
    head: ClassVar[str] = "causal"
    arch: str = "llama"  # causal
    mask_prob: float | None = None  # None: MEAP's ratio, 0.15 of the input (pre-training), 0.1 of the response (sft)
    sft: bool = False  # MEAP-SFT on prompt/response pairs instead of pre-training on windows
    sft_min_response: int = 50  # only longer responses get a masked copy (MEAP-SFT's reference: 50 tokens)

    def __post_init__(self):
        super().__post_init__()
        if self.mask_prob is not None:
            check_prob("mask_prob", self.mask_prob)
        if self.arch != "llama":
            raise ValueError("MEAP trains a causal model: arch=llama")
        if self.sft_min_response < 0:
            raise ValueError(f"sft_min_response must be >= 0, got {self.sft_min_response}")

    def prob(self) -> float:
        if self.mask_prob is not None:
            return self.mask_prob
        return SFT_PROB if self.sft else PRETRAIN_PROB

    def build_objective(self, model, info):
        return MEAP(model, info, prob=self.prob(), sft=self.sft, min_response=self.sft_min_response)

    def build(self) -> Task:
        if not self.sft:
            return super().build()
        from masklab.data.sft import sft_examples, sft_pairs
        from masklab.data.tokenizers import build_tokenizer, token_info

        train_pairs, valid_pairs, fingerprint = sft_pairs(self.data)
        pre = self.pretrained()
        tok = pre.tokenizer if pre else build_tokenizer(self.tokenizer, [p + r for p, r in train_pairs], fingerprint)
        info = token_info(tok)
        train, dropped = sft_examples(train_pairs, tok, self.seq_len)
        valid, _ = sft_examples(valid_pairs, tok, self.seq_len)
        facts = {"corpus": self.data, "train_pairs": len(train), "valid_pairs": len(valid), "dropped_pairs": dropped,
                 "vocab_size": info.vocab_size}  # fmt: skip
        model = self.make_model(pre, info, facts)
        return Task(self.build_objective(model, info), train, valid, fingerprint, tok, facts)


@register("meap", "MEAP: causal LM (Llama) with 15% mask tokens in the input, stdlib code, bytes, tiny preset")
def meap():
    return MEAPRecipe(preset="tiny", tokenizer="bytes", seq_len=128, batch_size=32, steps=300, lr=3e-3, warmup=20)
