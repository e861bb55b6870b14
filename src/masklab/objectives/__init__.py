"""Pretraining objectives: one file each, a corruption + a target + a loss around a plain HF model."""

from masklab.objectives.base import Objective, logits_of

__all__ = ["Objective", "logits_of"]
