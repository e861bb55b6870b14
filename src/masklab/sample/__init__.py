"""Masked-diffusion generation: exact categorical sampling, samplers, infill, classification, evaluation."""

from masklab.sample.categorical import categorical
from masklab.sample.generate import Generation, batch_prompts, generate
from masklab.sample.infill import parse_prompt, red_team_prompt
from masklab.sample.samplers import SAMPLER

__all__ = ["categorical", "generate", "Generation", "batch_prompts", "parse_prompt", "red_team_prompt", "SAMPLER"]
