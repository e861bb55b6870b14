"""Synthetic corpora whose distribution is known exactly: the ground truth for comparing samplers.

- :class:`RandomHMM`: a random hidden Markov model (Dirichlet rows). ``log_prob`` is the exact sequence likelihood by
  the forward algorithm (Rabiner 1989, Eq. 19-21, scaled), and ``denoiser`` gives the exact conditionals p(x_i |
  observed positions) of any partly masked sequence by forward-backward with masked emissions set to 1, so it is a
  perfect masked-diffusion model: samplers run on it are judged by the exact NLL of what they produce.
- :class:`TableJoint`: an explicit joint over all V^L short sequences, with exact conditionals by enumeration;
  small enough for chi-square tests of a sampler's output distribution.

Both denoisers are callables ``x [B, L] -> logits [B, L, V]`` with the mask id ``V`` (one past the symbols).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = ["RandomHMM", "TableJoint"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dirichlet(shape, alpha: float, rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1]))


class RandomHMM:
    """A random HMM with ``states`` hidden states over ``symbols`` symbols; ``alpha`` < 1 makes rows
    peaked."""

    def __init__(self, states: int = 8, symbols: int = 16, seed: int = 0, alpha: float = 0.3):
        if states <= 0 or symbols <= 1:
            raise ValueError(f"need states >= 1 and symbols >= 2, got {states}, {symbols}")
        g = np.random.default_rng(seed)
        self.states, self.symbols, self.mask_id = states, symbols, symbols
        self.start = _dirichlet((states,), 1.0, g)  # (S,)
        self.trans = _dirichlet((states, states), alpha, g)  # (S, S) rows: p(z' | z)
        self.emit = _dirichlet((states, symbols), alpha, g)  # (S, V) rows: p(x | z)

    def sample(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """[n, length] i.i.d. sequences (a loop over positions, vectorised over sequences)."""
        g = _gen(seed)
        z = torch.multinomial(self.start.expand(n, -1), 1, generator=g).squeeze(1)
        out = torch.empty(n, length, dtype=torch.long)
        for i in range(length):
            out[:, i] = torch.multinomial(self.emit[z], 1, generator=g).squeeze(1)
            z = torch.multinomial(self.trans[z], 1, generator=g).squeeze(1)
        return out

    def _emission(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, S] p(x_i | z): 1 where x_i is masked."""
        seen = x != self.mask_id
        e = self.emit.T[x.clamp(max=self.symbols - 1)]  # (B, L, S)
        return torch.where(seen[..., None], e, torch.ones_like(e))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """[B] exact log p(x) in nats (forward algorithm with per-step scaling); masked positions
        marginalised."""
        e = self._emission(x)
        a = self.start[None] * e[:, 0]  # (B, S)
        logp = torch.zeros(x.shape[0], dtype=torch.float64)
        for i in range(x.shape[1]):
            if i:
                a = (a @ self.trans) * e[:, i]
            c = a.sum(-1)
            logp += c.log()
            a = a / c[:, None]
        return logp

    def denoiser(self, x: torch.Tensor) -> torch.Tensor:
        """Exact conditionals as logits [B, L, V]: log p(x_i = v | all observed positions of the row)."""
        x = x.long()
        e = self._emission(x)  # (B, L, S)
        B, L, S = e.shape
        fw = torch.empty(B, L, S, dtype=torch.float64)
        a = self.start[None] * e[:, 0]
        for i in range(L):
            if i:
                a = (a @ self.trans) * e[:, i]
            a = a / a.sum(-1, keepdim=True)
            fw[:, i] = a
        bw = torch.empty_like(fw)
        b = torch.ones(B, S, dtype=torch.float64)
        for i in range(L - 1, -1, -1):
            bw[:, i] = b
            b = (b * e[:, i]) @ self.trans.T
            b = b / b.sum(-1, keepdim=True)
        # posterior of z_i given the other positions: forward without i's own emission, times backward
        prior_i = torch.cat([self.start.expand(B, 1, S), fw[:, :-1] @ self.trans], 1)  # p(z_i | x_<i) up to scale
        post = prior_i * bw
        post = post / post.sum(-1, keepdim=True)
        return (post @ self.emit).clamp(min=1e-300).log().float()  # (B, L, V)

    __call__ = denoiser


class TableJoint:
    """An explicit joint ``probs`` [V**L] over all sequences of ``length`` symbols from ``symbols``."""

    def __init__(self, probs: torch.Tensor, symbols: int, length: int):
        probs = torch.as_tensor(probs, dtype=torch.float64).flatten()
        if probs.numel() != symbols**length:
            raise ValueError(f"need {symbols**length} probabilities, got {probs.numel()}")
        self.probs = probs / probs.sum()
        self.symbols, self.length, self.mask_id = symbols, length, symbols
        self.seqs = torch.tensor(list(itertools.product(range(symbols), repeat=length)))  # (V**L, L), row-major
        self.onehot = torch.nn.functional.one_hot(self.seqs, symbols).double()  # (V**L, L, V)

    @classmethod
    def random(cls, symbols: int, length: int, seed: int = 0, sharpness: float = 2.0) -> TableJoint:
        """A random, strongly correlated joint: log-probs ~ sharpness * N(0, 1)."""
        z = torch.randn(symbols**length, dtype=torch.float64, generator=_gen(seed))
        return cls((sharpness * z).exp(), symbols, length)

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """[B] row-major index of each complete sequence."""
        w = self.symbols ** torch.arange(self.length - 1, -1, -1)
        return (x.long() * w).sum(-1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        seen = x != self.mask_id  # (B, L)
        agree = (self.seqs[None] == x[:, None]) | ~seen[:, None]  # (B, V**L, L)
        w = self.probs[None] * agree.all(-1)  # (B, V**L)
        cond = torch.einsum("bj,jlv->blv", w, self.onehot)
        cond = cond / cond.sum(-1, keepdim=True)
        return cond.clamp(min=1e-300).log().float()

    def entropy_bits(self) -> float:
        p = self.probs[self.probs > 0]
        return float(-(p * p.log2()).sum())
