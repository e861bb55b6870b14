"""Synthetic frame signals with exact labels: a Gaussian hidden Markov model over feature vectors.

A sticky chain over ``states`` hidden states (stay with probability ``stay``, else jump uniformly) emits at each
time step the state's mean vector plus isotropic Gaussian noise. With the default ``noise`` the best guess of the
state from one frame alone is right 54% of the time (8 states, 16 features), so reading the state off a frame's
neighbours helps: what masked frame prediction should learn (wav2vec 2.0 / W2v-BERT on speech, here with the hidden
state known exactly). The model (means, chain) is fixed by ``seed``; :meth:`GaussianHMM.sample` draws sequences
from their own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GaussianHMM"]


@dataclass(frozen=True)
class GaussianHMM:
    states: int = 8
    dim: int = 16  # features per frame
    stay: float = 0.9  # probability of keeping the state: segments of ~10 frames
    noise: float = 2.5  # emission standard deviation against unit-scale means: a lone frame is 54% right
    seed: int = 0

    def __post_init__(self):
        if self.states < 2 or self.dim < 1 or not 0.0 <= self.stay < 1.0 or not self.noise > 0:
            raise ValueError(f"GaussianHMM needs states >= 2, dim >= 1, stay in [0, 1), noise > 0: {self}")

    @property
    def means(self) -> np.ndarray:
        """[states, dim] emission means."""
        return np.random.default_rng(self.seed).standard_normal((self.states, self.dim))

    def sample(self, n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames [n, length, dim] float32, states [n, length] int64) of ``n`` sequences drawn from ``seed``."""
        rng = np.random.default_rng([self.seed, seed])
        s = np.empty((n, length), dtype=np.int64)
        s[:, 0] = rng.integers(self.states, size=n)
        for t in range(1, length):
            jump = rng.random(n) >= self.stay
            s[:, t] = np.where(jump, rng.integers(self.states, size=n), s[:, t - 1])
        x = self.means[s] + self.noise * rng.standard_normal((n, length, self.dim))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(s)
