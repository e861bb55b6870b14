"""Synthetic multichannel "intracranial" word trials with exact labels, for Du-IN (Zheng et al. 2024, "Du-IN:
Discrete units-guided mask modeling for decoding speech from Intracranial Neural signals").

The paper's premise (Sec. 1, 3.1): a word is processed in specific brain regions (vSMC, STG), as a pattern over the
channels of a region that no single channel holds. :class:`WordSignals` builds that world with everything known:

- ``channels`` channels in ``regions`` contiguous groups of ``p = channels / regions`` channels (``p`` a power of 2;
  region of channel c: ``c // p``);
- each region has one response waveform (a Hann-windowed sine of a region-specific frequency and phase, ``burst``
  samples, peak 1) and fixed channel magnitudes ``a_c`` in [0.6, 1];
- word w lives in region ``w % regions``, as the k-th word there (k = w // regions), with the gains
  ``a_c * H[k + 1, c]`` on that region's channels: row k + 1 of the p x p Sylvester-Hadamard matrix (signs only).
  The rows are orthogonal and none is the all-ones row, so the words of a region differ only in the *signs* of
  their channels: each single channel sees the same waveform with the same magnitude for every word of its region,
  and the first channel of a region has the same sign for all of them, while the region's channels together name
  the word exactly;
- a trial places its word's response at an onset jittered by up to ``jitter`` samples around the centre and adds
  per-channel noise, white Gaussian (std ``noise``) plus an AR(1) background (coefficient 0.95, stationary std
  ``drift``), independent across channels.

So ``x = signal + noise`` exactly, and the words' responses carry about half the variance (0.0117 against 0.0125
of noise with the defaults; :attr:`WordSignals.scale` is the exact overall std, to standardize by). A matched
filter that knows the gains, the waveforms and the word's region names every one of 1000 trials from the region's
channels together; from one channel alone at most 69% in a region of three words (the bound of one channel's
signs is 2/3 of balanced classes) and, from the region's first channel, 36-38% (chance 1/3). A logistic
regression on the raw samples names 45.9% of the 10 words (fit on 1000 trials, scored on 1000 others).
The world is fixed by ``seed``; :meth:`WordSignals.trials` draws trials
from their own seed (a data split, not a mask: numpy's seeded generator, as
:class:`masklab.data.hmm_frames.GaussianHMM`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["WordSignals", "Trials", "AR_COEF", "hadamard"]

AR_COEF = 0.95  # the background's AR(1) coefficient: slow drifts of ~20 samples


@dataclass(frozen=True)
class Trials:
    """What :meth:`WordSignals.trials` draws: ``x = signal + noise`` [n, length, channels] float32, the word of each
    trial [n] and its template's first sample [n]."""

    signal: torch.Tensor
    noise: torch.Tensor
    labels: torch.Tensor
    onsets: torch.Tensor

    @property
    def x(self) -> torch.Tensor:
        return self.signal + self.noise


def hadamard(p: int) -> np.ndarray:
    """[p, p] Sylvester-Hadamard matrix of +-1 (p a power of 2): orthogonal rows, row 0 all ones."""
    h = np.ones((1, 1))
    while len(h) < p:
        h = np.block([[h, h], [h, -h]])
    return h


@dataclass(frozen=True)
class WordSignals:
    words: int = 10
    channels: int = 16
    regions: int = 4  # contiguous channel groups of a power-of-2 size; a word lives in one
    length: int = 128  # samples per trial
    burst: int = 48  # samples of a region's response
    jitter: int = 16  # onset jitter: up to this many samples either side of the centred onset
    noise: float = 0.1  # white-noise std per channel, against a response of peak 1 (see above)
    drift: float = 0.05  # stationary std of the per-channel AR(1) background
    seed: int = 0  # fixes the waveforms and the channel magnitudes

    def __post_init__(self):
        if self.words < 2 or self.regions < 1 or self.channels % self.regions:
            raise ValueError(f"WordSignals needs words >= 2 and regions dividing channels: {self}")
        p = self.channels // self.regions
        if p < 2 or p & (p - 1):
            raise ValueError(f"channels per region must be a power of 2 >= 2 (Hadamard sign patterns): {self}")
        if self.words > self.regions * (p - 1):
            raise ValueError(f"at most regions * (channels per region - 1) = {self.regions * (p - 1)} words: {self}")
        if not 2 <= self.burst <= self.length - 2 * self.jitter or self.jitter < 0:
            raise ValueError(f"burst plus twice the jitter must fit in length, with jitter >= 0: {self}")
        if self.noise < 0 or self.drift < 0:
            raise ValueError(f"noise and drift must be >= 0: {self}")

    @property
    def per_region(self) -> int:
        return self.channels // self.regions

    def region_of(self, channel: int) -> int:
        return channel // self.per_region

    def templates(self) -> tuple[np.ndarray, np.ndarray]:
        """(waveforms [words, burst]: each word's region's response, peak |value| 1; gains [words, channels]:
        0 off the word's region)."""
        rng = np.random.default_rng([self.seed, 0])
        t = np.arange(self.burst)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * (t + 0.5) / self.burst)
        freq = rng.uniform(0.04, 0.2, self.regions)  # cycles per sample
        phase = rng.uniform(0, 2 * np.pi, self.regions)
        response = hann * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])  # (regions, burst)
        response /= np.abs(response).max(1, keepdims=True)
        magnitude = rng.uniform(0.6, 1.0, (self.regions, self.per_region))
        signs = hadamard(self.per_region)
        gains = np.zeros((self.words, self.channels))
        for w in range(self.words):
            r, k = w % self.regions, w // self.regions
            gains[w, r * self.per_region : (r + 1) * self.per_region] = magnitude[r] * signs[k + 1]
        return response[np.arange(self.words) % self.regions], gains

    @property
    def scale(self) -> float:
        """The exact standard deviation of a sample averaged over trials, channels and time: sqrt(noise^2 + drift^2 +
        mean over words of ||gains_w||^2 ||waveform_w||^2 / (channels * length)). Dividing by it gives signals of
        unit variance, the scale the networks start at (the reference's recordings are z-scored)."""
        wave, gains = self.templates()
        signal = np.mean((gains**2).sum(1) * (wave**2).sum(1)) / (self.channels * self.length)
        return float(np.sqrt(self.noise**2 + self.drift**2 + signal))

    def trials(self, n: int, seed: int) -> Trials:
        """``n`` trials drawn from ``seed``, words uniform."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        wave, gains = self.templates()
        rng = np.random.default_rng([self.seed, 1, seed])
        labels = rng.integers(self.words, size=n)
        centre = (self.length - self.burst) // 2
        onsets = centre + rng.integers(-self.jitter, self.jitter + 1, size=n)
        signal = np.zeros((n, self.length, self.channels))
        rows = onsets[:, None] + np.arange(self.burst)  # (n, burst): the samples each template covers
        signal[np.arange(n)[:, None], rows] = wave[labels][..., None] * gains[labels][:, None, :]
        noise = self.noise * rng.standard_normal((n, self.length, self.channels))
        eps = self.drift * np.sqrt(1 - AR_COEF**2) * rng.standard_normal((n, self.length, self.channels))
        back = np.empty_like(eps)
        back[:, 0] = self.drift * rng.standard_normal((n, self.channels))  # start in the stationary law
        for i in range(1, self.length):
            back[:, i] = AR_COEF * back[:, i - 1] + eps[:, i]
        as_t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
        return Trials(as_t(signal), as_t(noise + back), torch.from_numpy(labels), torch.from_numpy(onsets))

    def sample(self, n: int, seed: int, standardize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [n, length, channels] float32, words [n] int64); ``standardize`` divides x by :attr:`scale`."""
        t = self.trials(n, seed)
        return (t.x / self.scale if standardize else t.x), t.labels
