"""Prune a Hugging Face or masklab checkpoint folder to N:M and save it: ``masklab sparsify``.

    masklab sparsify --model DIR --method wanda --calib stdlib --out DIR_2of4

The model class is the checkpoint's ``config.architectures[0]`` from transformers (``AutoModel`` if absent).
The output folder is a ``save_pretrained`` folder with the tokenizer, every source file pruning does not change
(a sentence-transformers ``modules.json`` and its modules), ``sparsity.json`` (the arguments and the per-layer
report) and a fresh ``masklab.json`` whose manifest matches the new files and records the pruning.
"""

from __future__ import annotations

import argparse

from .apply import METHODS
from .prune_folder import prune_folder

CALIB_HELP = "calibration text: 'stdlib' (stdlib docstrings) or a .txt file with one text per line"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (save_pretrained layout)")
    parser.add_argument("--method", default="magnitude", choices=sorted(METHODS), help="pruning method")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=2, help="weights kept per group")
    parser.add_argument("--m", type=int, default=4, help="group size along the input dimension")
    parser.add_argument("--calib", default=None, help=CALIB_HELP)
    parser.add_argument("--calib-samples", type=int, default=64, help="number of calibration texts")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per calibration text")
    parser.add_argument("--batch-size", type=int, default=16, help="calibration batch size")
    parser.add_argument("--filter", default=None, help="regex on layer names (default: all Linear but heads)")
    parser.add_argument("--steps", type=int, default=100, help="MaskLLM training steps")
    parser.add_argument("--pad", action="store_true", help="pad input dims that m does not divide")


def run(args: argparse.Namespace) -> int:
    report = prune_folder(
        args.model,
        args.out,
        method=args.method,
        n=args.n,
        m=args.m,
        calib=args.calib,
        calib_samples=args.calib_samples,
        max_length=args.max_length,
        batch_size=args.batch_size,
        filter=args.filter,
        steps=args.steps,
        pad=args.pad,
    )
    print(report.table())
    print(f"saved {args.out}")
    return 0
