"""W2v-BERT on the synthetic Gaussian-HMM frame signals of ``frames-hmm`` (:mod:`masklab.objectives.w2vbert`).
Launch: ``masklab train --recipe w2v-bert-hmm --out runs/w2vbert``; the contrastive module alone (wav2vec 2.0 with
this network, at the same depth): ``mlm_weight=0 depth=4 mlm_depth=0``.

The data carry their hidden states, so ``masklab compare`` with the ``frames-state`` probe scores the
representations, and ``benchmarks/w2vbert_hmm.py`` also scores the codes (their NMI with the states).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.w2vbert import W2vBERT, W2vBERTObjective
from masklab.train.recipes.base import Task, register, seeded
from masklab.train.recipes.frames_hmm import FramesHMMRecipe


@dataclass
class W2vBERTRecipe(FramesHMMRecipe):
    # frames-hmm's 2.5 leaves a lone frame's code nearly blind to the state (NMI 0.08 at init) and the contrastive
    # task never gets going in 300 steps (measured, docs/fidelity_str_speech.md); at 1.5 a lone frame names its
    # state 80% of the time, so context still helps the probe
    hmm_noise: float = 1.5
    steps: int = 1000
    eval_every: int = 250
    ckpt_every: int = 500
    depth: int = 2  # contrastive module blocks
    mlm_depth: int = 2  # masked prediction module blocks (0: none; then mlm_weight must be 0)
    mlm_weight: float = 1.0  # gamma of L = beta L_c + gamma L_m (w2v-BERT: 1)
    contrastive_weight: float = 1.0  # beta (w2v-BERT: 1)
    diversity_weight: float = 0.1  # alpha of L_c = L_w + alpha L_d (wav2vec 2.0: 0.1)
    groups: int = 1  # G codebooks (w2v-BERT's targets are one code id per frame)
    entries: int = 32  # V entries per codebook: four times the 8 hidden states
    negatives: int = 100  # K distractors per masked frame (wav2vec 2.0: 100)
    kappa: float = 0.1  # temperature of the cosine similarities (wav2vec 2.0: 0.1)
    tau_max: float = 2.0  # Gumbel softmax temperature, annealed per step from tau_max ... (wav2vec 2.0: 2)
    tau_min: float = 0.5  # ... down to tau_min (wav2vec 2.0: 0.5) ...
    tau_decay: float = 0.998  # ... by this factor per step: tau_min at step 693 (wav2vec 2.0: 0.999995 of 400k)

    def __post_init__(self):
        super().__post_init__()
        if self.mlm_weight > 0 and self.mlm_depth < 1:
            raise ValueError("mlm_weight > 0 needs mlm_depth >= 1 (mlm_weight=0 for the contrastive module alone)")
        if self.depth < 1 or self.mlm_depth < 0 or self.groups < 1 or self.entries < 2 or self.dim % self.groups:
            raise ValueError("need depth >= 1, mlm_depth >= 0, groups >= 1 dividing dim, entries >= 2")
        if not 0 < self.tau_min <= self.tau_max or not 0 < self.tau_decay <= 1:
            raise ValueError("need 0 < tau_min <= tau_max and tau_decay in (0, 1]")

    def build(self) -> Task:
        train, _ = self.hmm.sample(self.train_sequences, self.length, seed=1)
        valid, _ = self.hmm.sample(256, self.length, seed=2)
        with seeded(self.seed):
            model = W2vBERT(self.hmm_dim, self.dim, self.depth, self.mlm_depth, groups=self.groups,
                            entries=self.entries, max_len=self.length,
                            tau=(self.tau_max, self.tau_min, self.tau_decay))  # fmt: skip
        objective = W2vBERTObjective(model, self.mask_prob, self.mask_length, self.negatives, self.kappa,
                                     self.diversity_weight, self.contrastive_weight, self.mlm_weight)  # fmt: skip
        fp = f"hmm-s{self.hmm_states}-d{self.hmm_dim}-n{self.hmm_noise:g}-seed{self.hmm_seed}-T{self.length}"
        return Task(objective, train, valid, fp, info={"example_tokens": self.length})  # a frame is a token


@register("w2v-bert-hmm", "W2v-BERT (Gumbel VQ, contrastive + MLM over code ids) on synthetic Gaussian-HMM frames")
def w2v_bert_hmm():
    return W2vBERTRecipe()
