"""Argument pieces shared by several commands: the one-line-error parser, typed values, sampler options."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad value and the choices, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """Sampler choice and options shared by ``masklab generate`` and ``masklab show generation``."""
    from masklab.sample.samplers import SAMPLER
    from masklab.sample.samplers.confidence import REMASKING

    p.add_argument("--sampler", default="confidence", choices=SAMPLER.names(), help="default: confidence")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (default: one token per step; ancestral: time steps, not clamped)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block-length", type=int, default=None, help="semi-autoregressive blocks of N masked tokens")
    p.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance (uncond masks the prompt)")
    p.add_argument("--remasking", choices=REMASKING, default=None, help="confidence sampler: which score orders")
    p.add_argument("--alg-temp", type=float, default=None, help="confidence sampler: Dream's random position choice")
    p.add_argument("--threshold", type=float, default=None, help="threshold sampler: commit above this (0.9)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop at the first generated EOS")


SAMPLER_OPTIONS = ("block_length", "cfg_scale", "remasking", "alg_temp", "threshold")


def sampler_options(args) -> dict:
    """The sampler options given on the command line (those left at None are the sampler's defaults)."""
    return {k: getattr(args, k) for k in SAMPLER_OPTIONS if getattr(args, k, None) is not None}
