"""``masklab train``: train a recipe, or resume a run exactly (works under torchrun for DDP)."""

from __future__ import annotations

import os
from pathlib import Path

from ._registry import COMMAND


def run(args) -> None:
    from masklab.train import checkpoint
    from masklab.train.loop import train
    from masklab.train.recipes.base import resolve_recipe

    if args.recipe is None and not args.resume:
        raise ValueError("--recipe is required (run 'masklab recipes' to list them)")
    if args.resume and not args.out:
        raise ValueError("--resume needs --out, the run folder to continue")
    saved = checkpoint.read_manifest(checkpoint.resolve(args.out))["recipe"] if args.resume else None
    overrides = list(args.overrides) + ([f"data={args.data}"] if args.data else [])
    recipe = resolve_recipe(args.recipe, overrides, saved)
    out = Path(args.out or f"runs/{recipe.name}")
    summary = train(recipe, out, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print_summary(summary, out)


def print_summary(s: dict, out: Path) -> None:
    ev = s.get("eval", {})
    print(
        f"trained {s['step']} steps in {s['train_seconds']:.0f} s ({s['tokens_per_s']:,.0f} tokens/s)"
        + (" [stopped at the time budget]" if s.get("stopped_early") else "")
    )
    if "nll_bound_bits" in ev:
        unigram = s.get("valid_unigram_entropy_bits")
        print(
            f"valid NLL bound: {ev['nll_bound_bits']:.3f} bits/token"
            + (f"; valid unigram entropy: {unigram:.3f} bits/token" if unigram is not None else "")
        )
    else:
        print("valid: " + ", ".join(f"{k}={v:.4f}" for k, v in ev.items()))
    print(f"checkpoint: {out / 'model'}")


@COMMAND.register("train", "train a recipe; overrides are key=value pairs type-checked against it (torchrun: DDP)")
def setup(p) -> None:
    p.add_argument("--recipe", help="recipe name (masklab recipes)")
    p.add_argument("--data", help="stdlib-code | stdlib-docs | .txt/.jsonl file or folder | datasets name or path")
    p.add_argument("--out", help="run folder (default runs/RECIPE)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model exactly")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)
