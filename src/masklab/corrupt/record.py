"""The record every corruption returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # label value that losses skip, as in Hugging Face


@dataclass
class Corruption:
    """What a corruption did to a batch.

    inputs:  [B, L] ids the model sees.
    targets: [B, L] ids to predict, IGNORE_INDEX where nothing is predicted.
    mask:    [B, L] bool, True where the position was selected for corruption.
    weights: [B, L] float loss weight per position (0 where not selected), or None when every selected position
             weighs 1 (BERT-style masks: random, whole-word and every mask built on ``apply_mix``: span, n-gram,
             score-guided, ELECTRA positions), which saves a [B, L] tensor.
    kind:    [B, L] int8 role of each position: 0 kept, 1 mask token, 2 random token, 3 selected but unchanged.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor | None = None
    kind: torch.Tensor | None = None


KEPT, MASKED, RANDOM, UNCHANGED = 0, 1, 2, 3
