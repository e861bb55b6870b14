"""Masked-diffusion generation: exact categorical sampling, samplers, infill."""

from masklab.sample.categorical import categorical
from masklab.sample.generate import Generation, generate
from masklab.sample.infill import parse_prompt
from masklab.sample.samplers import SAMPLERS

__all__ = ["categorical", "generate", "Generation", "parse_prompt", "SAMPLERS"]
