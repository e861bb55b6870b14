"""A tiny scene-text world: strings of scikit-learn digits (8x8, bundled, no download) tiled into one image.

Each string is a word of a fixed lexicon (``lexicon`` words of ``min_len`` to ``max_len`` digits drawn once from
``seed``; ``lexicon=0`` draws every string uniformly), so, as in real words, the characters around a digit say
something about it. Each character is a random handwritten sample of its digit from one split of
:func:`masklab.data.digits.digits_images` (training strings from the training split, held-out strings from the
test split: the held-out handwriting is never seen), and the word starts at a random horizontal offset of 0 to
``jitter`` pixels (a cropped word image: the text starts near its left edge, never exactly at it).

Labels follow OpenOCR's dictionary order ``[EOS] + characters + [<mask>, <pad>]``: EOS 0, digit d is d + 1,
<mask> 11, <pad> 12; a label row is the word's ids, the EOS, then padding, ``max_len + 1`` positions. The training
loop hands an objective one tensor per example, so :meth:`DigitStrings.pack` puts the pixels and the label ids
(exact in float32) in one row and :meth:`DigitStrings.unpack` splits it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from masklab.data.digits import N_TRAIN, digits_images

__all__ = ["DigitStrings", "EOS", "MASK", "PAD", "VOCAB", "CLASSES"]

EOS, MASK, PAD = 0, 11, 12
VOCAB = 13  # EOS, ten digits, <mask>, <pad>
CLASSES = 11  # what a decoder predicts: EOS and the digits (OpenOCR's out_channels - 2)
GLYPH = 8  # sklearn digits are 8x8


@dataclass(frozen=True)
class DigitStrings:
    max_len: int = 8  # digits in the longest word; label rows hold max_len + 1 positions (the EOS)
    min_len: int = 3
    lexicon: int = 500  # words, drawn once from seed; 0: every string is uniform digits of a uniform length
    seed: int = 0
    jitter: int = 8  # the word starts 0 .. jitter pixels from the left edge; the image is that much wider

    def __post_init__(self):
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len} and {self.max_len}")
        if self.lexicon < 0 or self.jitter < 0:
            raise ValueError(f"lexicon and jitter must be >= 0, got {self.lexicon} and {self.jitter}")

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width): one glyph high, the longest word plus the jitter wide."""
        return GLYPH, GLYPH * self.max_len + self.jitter

    @property
    def length(self) -> int:
        return self.max_len + 1

    def words(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(digits [n, max_len] with -1 past each word, lengths [n]) of ``n`` strings: lexicon words (uniform over
        the lexicon) or uniform strings."""
        if self.lexicon:
            digits, lengths = self._draw(np.random.default_rng([self.seed, 0]), self.lexicon)
            pick = rng.integers(self.lexicon, size=n)
            return digits[pick], lengths[pick]
        return self._draw(rng, n)

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        lengths = rng.integers(self.min_len, self.max_len + 1, size=n)
        digits = rng.integers(10, size=(n, self.max_len))
        return np.where(np.arange(self.max_len) < lengths[:, None], digits, -1), lengths

    def sample(self, n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [n, 1, H, W] float in [0, 1], labels [n, max_len + 1] int64) of ``n`` strings drawn from
        ``seed``, written with the glyphs of ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        glyphs, digit = digits_images(GLYPH)
        part = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
        glyphs, digit = glyphs[part, 0].numpy(), digit[part].numpy()
        order = np.argsort(digit, kind="stable")  # the split's glyphs grouped by digit
        count = np.bincount(digit, minlength=10)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        rng = np.random.default_rng([self.seed, 1 if split == "train" else 2, seed])
        words, lengths = self.words(rng, n)  # (n, max_len), (n,)
        d = np.maximum(words, 0)
        sample = order[first[d] + (rng.random(words.shape) * count[d]).astype(np.int64)]  # (n, max_len) glyph ids
        H, W = self.image_shape
        x0 = rng.integers(0, self.jitter + 1, size=n)  # (n,) each word's left edge
        images = np.zeros((n, 1, H, W), dtype=np.float32)
        px = np.arange(GLYPH)
        for j in range(self.max_len):  # paste the j-th glyph of every word that has one
            rows = np.flatnonzero(lengths > j)
            cols = (x0[rows] + GLYPH * j)[:, None, None] + px[None, None, :]  # (r, 1, 8)
            images[rows[:, None, None], 0, px[None, :, None], cols] = glyphs[sample[rows, j]]
        labels = np.where(words >= 0, words + 1, PAD)
        labels = np.concatenate([labels, np.full((n, 1), PAD)], axis=1)
        labels[np.arange(n), lengths] = EOS
        return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    def pack(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[n, H * W + max_len + 1] float32 rows: the pixels, then the label ids."""
        return torch.cat([images.flatten(1), labels.float()], dim=1)

    def unpack(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [n, 1, H, W], labels [n, max_len + 1] int64) of packed rows."""
        H, W = self.image_shape
        if rows.dim() != 2 or rows.shape[1] != H * W + self.length:
            raise ValueError(f"packed rows must be [n, {H * W + self.length}], got {tuple(rows.shape)}")
        return rows[:, : H * W].reshape(-1, 1, H, W), rows[:, H * W :].round().long()
