"""An "aligned" masked-diffusion chat model on the synthetic DIJA corpus (:mod:`masklab.data.dija`): LLaDA's SFT
loss on request/response pairs in which every request naming the banned keyword is answered by a refusal. Launch:
``masklab train --recipe dija-aligned --out runs/dija``.

``benchmarks/dija.py`` trains it and measures DIJA's attack (Wen et al. 2025): the attack success rate of plain
prompts against interleaved mask-text templates on held-out banned requests, and the refusal rate on harmless ones.

``stage=pretrain`` trains on the corpus in which banned requests are answered helpfully instead (the keyword named);
a thin alignment is then ``stage=aligned init=RUN/model steps=N`` with few steps, from that checkpoint (DIJA's
setting: broad knowledge first, alignment after). See ``docs/dija.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.data.dija import STAGES, dija_corpus
from masklab.train.recipes.base import Task, register
from masklab.train.recipes.mdm import MDMSFTRecipe


@dataclass
class DijaRecipe(MDMSFTRecipe):
    modality: ClassVar[str] = "dija"  # no `masklab compare` probe reads these runs: the evaluation is the ASR

    fixed_data: ClassVar[str] = "dija"  # the one data this recipe reads
    data: str = "dija"  # the only data: the synthetic aligned corpus, generated at run time from world_seed
    world_seed: int = 0  # keys which requests are held out (never trained on)
    stage: str = "aligned"  # aligned: banned requests refused | pretrain: answered helpfully, naming the keyword
    valid_fraction: float = 0.3  # of the 2000 requests: 600 held out, 228 of them banned
    seq_len: int = 96  # the longest pair is 93 bytes (pretrain stage; 89 aligned), plus BOS and EOS
    preset: str = "mini"  # 4 layers of width 64: 600 steps left its harmless answers garbled, 1500 steps do not
    tokenizer: str = "bytes"
    steps: int = 1500  # 285 s on one core of a shared 2-core CPU; held-out NLL bound 0.06 bits per response token
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    eval_every: int = 500
    ckpt_every: int = 500

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")

    def build(self) -> Task:
        from masklab.data.sft import sft_examples
        from masklab.data.tokenizers import build_tokenizer, token_info

        corpus = dija_corpus(self.world_seed, self.valid_fraction, self.stage)
        pre = self.pretrained()
        tok = pre.tokenizer if pre else build_tokenizer(self.tokenizer, [p + r for p, r in corpus.train],
                                                        corpus.fingerprint)  # fmt: skip
        info = token_info(tok)
        train, dropped = sft_examples(corpus.train, tok, self.seq_len)
        valid, _ = sft_examples(corpus.valid, tok, self.seq_len)
        # example_tokens: column 0 of a row is its prompt length, not a token
        facts = {"corpus": corpus.fingerprint, "train_pairs": len(train), "valid_pairs": len(valid),
                 "dropped_pairs": dropped, "vocab_size": info.vocab_size,
                 "example_tokens": self.seq_len}  # fmt: skip
        model = self.make_model(pre, info, facts)
        return Task(self.build_objective(model, info), train, valid, corpus.fingerprint, tok, facts)


@register("dija-aligned", "LLaDA SFT on a synthetic aligned corpus (banned keyword -> refusal): the DIJA target")
def dija_aligned():
    return DijaRecipe()
