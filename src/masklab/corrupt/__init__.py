"""Corruption masks: what the model must not see. Pure tensor functions with keyed randomness."""

from masklab.corrupt.diffusion import mdm_noise, sample_t
from masklab.corrupt.keyed import example_keys
from masklab.corrupt.record import IGNORE_INDEX, Corruption
from masklab.corrupt.tokens import random_mask

__all__ = ["Corruption", "IGNORE_INDEX", "example_keys", "random_mask", "mdm_noise", "sample_t"]
