"""Masked-diffusion LM recipes. Launch: ``masklab train --recipe mdm-tiny`` (the demo) or ``--recipe mdm``."""

from __future__ import annotations

from dataclasses import dataclass

from masklab.corrupt.diffusion import T_SAMPLING
from masklab.objectives.mdm import MDM, MDMSFT
from masklab.train.recipes.base import SMALL_BPE, Task, TextRecipe, register


@dataclass
class MDMRecipe(TextRecipe):
    eps: float = 1e-3  # smallest t: keeps the 1/t weight bounded
    t_sampling: str = "iid"  # iid | antithetic | stratified (over the global batch)

    def __post_init__(self):
        super().__post_init__()
        if self.t_sampling not in T_SAMPLING:
            raise ValueError(f"t_sampling must be one of {T_SAMPLING}, got {self.t_sampling!r}")
        if self.arch != "modernbert":
            raise ValueError("masked diffusion needs a bidirectional model: arch=modernbert")

    def build_objective(self, model, info):
        return MDM(model, info, eps=self.eps, t_sampling=self.t_sampling)


@register("mdm-tiny", "masked diffusion on stdlib code, raw bytes, 1.4M params: the 4-minute CPU demo")
def mdm_tiny():
    # Bytes learn within a CPU budget; BPE vocabularies sit on the unigram plateau for the first minutes.
    return MDMRecipe(
        preset="tiny",
        tokenizer="bytes",
        seq_len=128,
        batch_size=32,
        steps=300,
        lr=3e-3,
        warmup=20,
        eval_every=100,
        ckpt_every=100,
        max_minutes=3.75,
    )


@register("mdm", "masked diffusion on stdlib code, BPE-4096, small preset (GPU or long CPU runs)")
def mdm():
    return MDMRecipe(**SMALL_BPE)


@dataclass
class MDMSFTRecipe(MDMRecipe):
    """LLaDA-style SFT on prompt/response pairs (``data``: a .jsonl of {"prompt", "response"} or stdlib-sft)."""

    def build_objective(self, model, info):
        return MDMSFT(model, info, eps=self.eps, t_sampling=self.t_sampling)

    def build(self) -> Task:
        from masklab.data.sft import sft_examples, sft_pairs
        from masklab.data.tokenizers import build_tokenizer, token_info

        train_pairs, valid_pairs, fingerprint = sft_pairs(self.data)
        pre = self.pretrained()
        texts = [p + r for p, r in train_pairs]
        tok = pre.tokenizer if pre else build_tokenizer(self.tokenizer, texts, fingerprint)
        info = token_info(tok)
        train, dropped = sft_examples(train_pairs, tok, self.seq_len)
        valid, _ = sft_examples(valid_pairs, tok, self.seq_len)
        facts = {"corpus": self.data, "train_pairs": len(train), "valid_pairs": len(valid), "dropped_pairs": dropped,
                 "vocab_size": info.vocab_size}  # fmt: skip
        model = self.make_model(pre, info, facts)
        return Task(self.build_objective(model, info), train, valid, fingerprint, tok, facts)


@register("mdm-sft", "LLaDA SFT: masked diffusion on the response of prompt/response pairs (stdlib-sft default)")
def mdm_sft():
    return MDMSFTRecipe(
        data="stdlib-sft", preset="tiny", tokenizer="bytes", seq_len=256, batch_size=16, steps=300, lr=1e-3,
        warmup=20, eval_every=100, ckpt_every=100,
    )  # fmt: skip
