"""Block diffusion (BD3-LM) recipe. Launch: ``masklab train --recipe bd3-tiny``; then ``masklab generate --model RUN
--prompt "def <mask:48>" --cache`` samples it block by block with the exact KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.corrupt.diffusion import T_SAMPLING
from masklab.objectives.bd3 import BD3
from masklab.train.recipes.base import TextRecipe, register


@dataclass
class BD3Recipe(TextRecipe):
    head: ClassVar[str] = "causal"  # a decoder body and LM head, used without the shift: position i predicts token i
    arch: str = "llama"  # a decoder: HF keeps its keys and values (the KV cache); ModernBERT has no cache
    block_size: int = 16  # tokens per block (the paper's L'): attention is bidirectional inside, causal across
    eps: float = 1e-3  # smallest t: keeps the 1/t weight bounded
    t_sampling: str = "iid"  # iid | antithetic | stratified (over the rows x blocks of the global batch)

    def __post_init__(self):
        super().__post_init__()
        if self.arch != "llama":
            raise ValueError("block diffusion samples with a KV cache, which needs a decoder: arch=llama")
        if self.t_sampling not in T_SAMPLING:
            raise ValueError(f"t_sampling must be one of {T_SAMPLING}, got {self.t_sampling!r}")
        if self.block_size < 1 or self.seq_len % self.block_size:
            raise ValueError(
                f"block_size={self.block_size} does not fit seq_len={self.seq_len}: seq_len must be whole blocks"
            )

    def build_objective(self, model, info):
        return BD3(model, info, block_size=self.block_size, eps=self.eps, t_sampling=self.t_sampling)


@register("bd3-tiny", "block diffusion (BD3-LM) on stdlib code, bytes, blocks of 16, tiny Llama: KV-cached sampling")
def bd3_tiny():
    return BD3Recipe(
        preset="tiny", tokenizer="bytes", seq_len=128, batch_size=32, steps=300, lr=3e-3, warmup=20, eval_every=100,
        ckpt_every=100, max_minutes=3.75, block_size=16,
    )  # fmt: skip
