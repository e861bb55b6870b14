"""LaMP in miniature on synthetic captioned skeleton motions (:mod:`masklab.data.motions`,
:mod:`masklab.objectives.lamp`). Launch: ``masklab train --recipe lamp-motions --out runs/lamp``; without the
contrastive loss: ``contrastive_weight=0``; bidirectional masked transformer (MoMask's): ``causal=false``.

``benchmarks/lamp.py`` scores the runs: text-to-motion and motion-to-text R@1 on held-out pairs, and the
parameters read back from motions generated from captions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import torch

from masklab.data.motions import JOINTS, TEMPLATES, captions, sample_motions
from masklab.models.lamp import LaMP, LaMPConfig, embed_captions, fit_codebook, load_text_tower
from masklab.objectives.lamp import LaMPObjective
from masklab.train.recipes.base import Recipe, Task, register, seeded

__all__ = ["LaMPRecipe", "caption_table"]


@functools.lru_cache(maxsize=4)
def caption_table(text_tower: str) -> torch.Tensor:
    """[C, H] the frozen tower's embedding of every caption of :func:`masklab.data.motions.captions` (computed once
    per process: 216 short sentences)."""
    model, tokenizer = load_text_tower(text_tower)
    return embed_captions(captions(), model, tokenizer)


@dataclass
class LaMPRecipe(Recipe):
    modality: ClassVar[str] = "motion"

    fixed_data: ClassVar[str] = "motions"  # the one data this recipe reads
    data: str = "motions"  # the only data this recipe reads: sample_motions, train from seed 1, valid from seed 2
    text_tower: str = "sentence-transformers/all-MiniLM-L6-v2"  # frozen; an offline package or a model folder
    length: int = 32  # frames per motion (one token each)
    train_motions: int = 4000  # ~37 per parameter combination
    noise: float = 0.02  # units of Gaussian noise per coordinate (the smallest amplitude is 0.25)
    codes: int = 128  # per-frame k-means codebook entries
    dim: int = 64  # width of both transformers: 128 trains at 0.8 s/step on the shared 2-core CPU, 64 at 0.35
    embed_dim: int = 64  # joint text-motion space
    depth: int = 2  # motion tower blocks
    gen_depth: int = 3  # masked transformer blocks
    heads: int = 4
    causal: bool = True  # LaMP's autoregressive masked prediction; false: bidirectional (MoMask)
    contrastive_weight: float = 1.0  # 0: no alignment, the generator reads an untrained text head
    generation_weight: float = 1.0
    cond_drop: float = 0.1  # condition dropped for classifier-free guidance (reference: 0.1)
    label_smoothing: float = 0.1  # of the contrastive cross-entropies (reference: 0.1)
    steps: int = 400  # ~2.5 CPU minutes; generation is still improving there (docs/methods_pretraining.md)
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    eval_every: int = 100
    ckpt_every: int = 200

    def __post_init__(self):
        super().__post_init__()
        if self.length < 4 or self.train_motions < self.codes or self.codes < 2:
            raise ValueError("need length >= 4 and 2 <= codes <= train_motions")
        if self.noise < 0 or self.dim % self.heads or self.depth < 1 or self.gen_depth < 1:
            raise ValueError("need noise >= 0, heads dividing dim, depth >= 1 and gen_depth >= 1")
        if min(self.contrastive_weight, self.generation_weight) < 0 or not (
            self.contrastive_weight or self.generation_weight
        ):
            raise ValueError("contrastive_weight and generation_weight must be >= 0, not both 0")
        if not 0 <= self.cond_drop <= 1 or not 0 <= self.label_smoothing <= 1:
            raise ValueError("cond_drop and label_smoothing must be in [0, 1]")

    @property
    def config(self) -> LaMPConfig:
        return LaMPConfig(self.length, self.dim, self.embed_dim, self.depth, self.gen_depth, self.heads, self.causal)

    def rows(self, model: LaMP, data) -> torch.Tensor:
        """[N, T + 2] token ids, caption index, parameter combination (the objective's rows)."""
        ids = model.quantizer.encode(data.joints)
        return torch.cat([ids, data.caption_id[:, None], data.combo[:, None]], dim=1)

    def build(self) -> Task:
        train = sample_motions(self.train_motions, seed=1, length=self.length, noise=self.noise)
        valid = sample_motions(512, seed=2, length=self.length, noise=self.noise)
        codebook = fit_codebook(train.joints.flatten(2).flatten(0, 1), self.codes, seed=self.seed)
        with seeded(self.seed):
            model = LaMP(codebook, caption_table(self.text_tower), len(JOINTS), self.config)
        objective = LaMPObjective(model, self.contrastive_weight, self.generation_weight, self.cond_drop,
                                  self.label_smoothing)  # fmt: skip
        error = (model.quantizer.decode(model.quantizer.encode(valid.joints)) - valid.joints).norm(dim=-1).mean()
        fp = f"motions-T{self.length}-n{self.train_motions}-noise{self.noise:g}-t{len(TEMPLATES)}"
        return Task(objective, self.rows(model, train), self.rows(model, valid), fp,
                    info={"example_tokens": self.length, "quantizer_joint_error": float(error)})  # fmt: skip


@register("lamp-motions", "LaMP: contrastive text-motion alignment + text-conditioned masked motion tokens")
def lamp_motions():
    return LaMPRecipe()
