"""Masked frame prediction on synthetic HMM signals (:class:`masklab.data.hmm_frames.GaussianHMM`). Launch:
``masklab train --recipe frames-hmm --out runs/frames mask_prob=0.065 mask_length=10``.

The data carry their hidden states, so the ``frames-state`` probe of ``masklab compare`` scores what the encoder
learnt exactly: which state emitted each frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.data.hmm_frames import GaussianHMM
from masklab.objectives.frames import FrameObjective, MaskedFramePredictor
from masklab.train.recipes.base import Recipe, Task, register, seeded


@dataclass
class FramesHMMRecipe(Recipe):
    modality: ClassVar[str] = "frames"

    fixed_data: ClassVar[str] = "hmm"  # the one data this recipe reads
    data: str = "hmm"  # the only data this recipe reads: GaussianHMM sequences, generated from hmm_seed
    hmm_states: int = 8
    hmm_dim: int = 16  # features per frame
    hmm_noise: float = 2.5  # emission noise against unit-scale means: a lone frame names its state 54% of the time
    hmm_seed: int = 0  # fixes the HMM (means, chain); train and valid sequences are drawn from their own seeds
    length: int = 64  # frames per sequence
    train_sequences: int = 2000
    mask_prob: float = 0.065  # wav2vec 2.0's span start probability ...
    mask_length: int = 10  # ... and span length: about half the frames masked
    dim: int = 64
    depth: int = 2
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 30
    eval_every: int = 100
    ckpt_every: int = 100

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mask_prob <= 1.0 or self.mask_length < 1:
            raise ValueError(
                f"mask_prob must be in (0, 1] and mask_length >= 1, got {self.mask_prob}, {self.mask_length}"
            )
        if self.length < 2 or self.train_sequences < 1:
            raise ValueError("length must be >= 2 and train_sequences >= 1")

    @property
    def hmm(self) -> GaussianHMM:
        return GaussianHMM(self.hmm_states, self.hmm_dim, noise=self.hmm_noise, seed=self.hmm_seed)

    def build(self) -> Task:
        train, _ = self.hmm.sample(self.train_sequences, self.length, seed=1)
        valid, _ = self.hmm.sample(256, self.length, seed=2)
        with seeded(self.seed):
            model = MaskedFramePredictor(self.hmm_dim, self.dim, self.depth, max_len=self.length)
        objective = FrameObjective(model, self.mask_prob, self.mask_length)
        fp = f"hmm-s{self.hmm_states}-d{self.hmm_dim}-n{self.hmm_noise:g}-seed{self.hmm_seed}-T{self.length}"
        return Task(objective, train, valid, fp, info={"example_tokens": self.length})  # a frame is a token


@register("frames-hmm", "masked frame prediction (wav2vec2 spans, L1) on synthetic Gaussian-HMM frame signals")
def frames_hmm():
    return FramesHMMRecipe()
