"""The masklab command line: thin wrappers that parse arguments and call the library.

Known errors (bad paths, bad overrides, bad prompts, corrupted checkpoints) print one line on stderr and exit 2.
Set MASKLAB_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

# Commands implemented in other modules: each exposes add_arguments(parser) and run(args).
COMMANDS = {
    "sparsify": "masklab.sparsity.cli",
    "classify": "masklab.sample.classify",
}


def cmd_recipes(args) -> None:
    from masklab.train.recipes import RECIPES

    width = max(map(len, RECIPES))
    for name in sorted(RECIPES):
        print(f"{name:<{width}}  {RECIPES[name].summary}")


def cmd_list(args) -> None:
    from masklab.registry import kinds

    registries = kinds()
    if args.kind is None:
        for kind, reg in registries.items():
            print(f"{kind}: {len(reg)} entries; {reg.signature}")
        return
    if args.kind not in registries:
        raise ValueError(f"unknown kind {args.kind!r}; choose from: {', '.join(registries)}")
    entries = registries[args.kind].entries()
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name:<{width}}  {e.summary}")


def cmd_train(args) -> None:
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
        _print_summary(summary, out)


def _print_summary(s: dict, out: Path) -> None:
    ev = s.get("eval", {})
    print(
        f"trained {s['step']} steps in {s['train_seconds']:.0f} s ({s['tokens_per_s']:,.0f} tokens/s)"
        + (" [stopped at the time budget]" if s.get("stopped_early") else "")
    )
    if "nll_bound_bits" in ev:
        print(
            f"valid NLL bound: {ev['nll_bound_bits']:.3f} bits/token; "
            f"valid unigram entropy: {s['valid_unigram_entropy_bits']:.3f} bits/token"
        )
    else:
        print("valid: " + ", ".join(f"{k}={v:.4f}" for k, v in ev.items()))
    print(f"checkpoint: {out / 'model'}")


def cmd_eval(args) -> None:
    from masklab.train import checkpoint
    from masklab.train.recipes.base import apply_overrides, from_dict

    ckpt = checkpoint.resolve(args.model)
    meta = checkpoint.verify(ckpt)
    recipe = from_dict(meta["recipe"])
    overrides = []
    if hasattr(recipe, "tokenizer") and (ckpt / "tokenizer.json").exists():
        overrides.append(f"tokenizer={ckpt}")  # the tokenizer saved with the model, not a retrained one
    if args.data:
        overrides.append(f"data={args.data}")
    recipe = apply_overrides(recipe, overrides)
    import torch

    task = recipe.build()
    task.objective.to("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    task.objective.load_model(ckpt)
    result = task.objective.evaluate(task.valid, seed=recipe.seed, max_batches=args.batches)
    result.update({k: v for k, v in task.info.items() if k.startswith("valid_")})
    result["examples"] = len(task.valid) if args.batches is None else min(len(task.valid), 32 * args.batches)
    if "nll_bound_bits" in result:
        print(
            f"valid NLL bound: {result['nll_bound_bits']:.3f} bits/token "
            f"(unigram entropy of the valid split: {result['valid_unigram_entropy_bits']:.3f})"
        )
    print(json.dumps(result, indent=2))


def cmd_generate(args) -> None:
    import torch

    from masklab.sample import generate, parse_prompt
    from masklab.train.checkpoint import load_masked_lm

    model, tok = load_masked_lm(args.model)
    ids = parse_prompt(args.prompt, tok, max_len=model.config.max_position_embeddings)
    options = {
        k: v
        for k, v in {
            "block_length": getattr(args, "block_length", None),
            "cfg_scale": getattr(args, "cfg_scale", None),
            "remasking": getattr(args, "remasking", None),
            "alg_temp": getattr(args, "alg_temp", None),
            "threshold": getattr(args, "threshold", None),
        }.items()
        if v is not None
    }
    if getattr(args, "stop_at_eos", False):
        options["eos_id"] = tok.eos_token_id
    g = generate(
        model,
        torch.tensor([ids]),
        mask_id=tok.mask_token_id,
        sampler=args.sampler,
        steps=args.steps,
        temperature=args.temperature,
        seed=args.seed,
        top_k=args.top_k,
        top_p=args.top_p,
        return_order=True,
        **options,
    )
    print(tok.decode(g.ids[0]))
    print(f"{args.sampler}: {g.nfe} model calls", file=sys.stderr)
    if args.png:
        from masklab.viz.generation import render_unmasking, token_pieces

        render_unmasking(
            token_pieces(tok, g.ids[0]),
            g.order[0].tolist(),
            args.png,
            title=f"{args.sampler} sampler, {g.nfe} model calls, seed {args.seed}",
        )
        print(f"wrote {args.png}", file=sys.stderr)


def cmd_bench(args) -> None:
    import runpy

    folder = Path("benchmarks")
    if not folder.is_dir():
        raise FileNotFoundError("no benchmarks/ folder here: run 'masklab bench' from a masklab checkout")
    scripts = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith(("_", "gpu_")))
    if not args.name:
        print("\n".join(scripts))
        return
    if args.name not in scripts:
        raise ValueError(f"unknown benchmark {args.name!r}; choose from {scripts}")
    sys.argv = [str(folder / f"{args.name}.py")]
    runpy.run_path(sys.argv[0], run_name="__main__")


def _add_module_command(subparsers, name: str, module: str) -> None:
    """A subcommand from a module exposing add_arguments(parser) and run(args)."""
    mod = importlib.import_module(module)
    p = subparsers.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0])
    if name == "corruption":  # a pure renderer: its arguments live here
        _corruption_arguments(p)
        return
    mod.add_arguments(p)
    p.set_defaults(func=mod.run)


def _corruption_arguments(p) -> None:
    from masklab.viz import corruption as viz

    p.add_argument("--strategy", default="random", help="a token strategy name, or 'all' for one row each")
    p.add_argument("--text", default=viz.DEFAULT_TEXT, help="text to corrupt")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--prob", type=float, default=0.15, help="masking rate (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="mask seed")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: bundled bert WordPiece)")

    def run(args) -> None:
        print(viz.corruption_figure(args.out, args.strategy, args.text, args.seed, args.prob, args.tokenizer))

    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad value and the choices, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from masklab.viz import SHOW

    p = _Parser(prog="masklab", description="Every kind of mask in modern deep learning.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the registered plug-ins of a kind (no kind: every kind)")
    s.add_argument("kind", nargs="?", help="token | objective | recipe | ... (omit to list the kinds)")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("recipes", help="list the training recipes, one line each")
    s.set_defaults(func=cmd_recipes)

    s = sub.add_parser(
        "train",
        help="train a recipe (works under torchrun for DDP)",
        description="Train a recipe. Overrides are key=value pairs type-checked against the recipe.",
    )
    s.add_argument("--recipe", help="recipe name (masklab recipes)")
    s.add_argument("--data", help="stdlib-code | stdlib-docs | .txt/.jsonl file or folder | datasets name or path")
    s.add_argument("--out", help="run folder (default runs/RECIPE)")
    s.add_argument("--resume", action="store_true", help="continue from OUT/model exactly")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="held-out metrics of a checkpoint (MDM: NLL bound in bits/token)")
    s.add_argument("--model", required=True, help="run folder or checkpoint folder")
    s.add_argument("--data", help="evaluate on other data than the run's")
    s.add_argument("--batches", type=_positive_int, default=None, help="held-out batches of 32 (default: all)")
    s.add_argument("--cpu", action="store_true", help="evaluate on the CPU")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("generate", help="fill <mask> / <mask:N> placeholders with a masked-diffusion sampler")
    s.add_argument("--model", required=True, help="run folder or checkpoint folder")
    s.add_argument("--prompt", required=True, help="text with <mask> (one token) or <mask:N> (N tokens)")
    from masklab.sample.generate import add_sampler_arguments

    add_sampler_arguments(s)
    s.add_argument("--png", help="also draw the unmasking order to this PNG")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("show", help="draw a mask as a PNG")
    kinds = s.add_subparsers(dest="kind", required=True)
    for kind, module in SHOW.items():
        _add_module_command(kinds, kind, module)
    for name, module in COMMANDS.items():
        _add_module_command(sub, name, module)

    s = sub.add_parser("bench", help="list or run a benchmark script from ./benchmarks")
    s.add_argument("name", nargs="?")
    s.set_defaults(func=cmd_bench)
    return p


KNOWN_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = [*args.overrides, *extra]  # key=value overrides may come after an option
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # an argparse error (one line, code 2) returns its code; --help exits 0 as usual
        if e.code:
            return e.code
        raise
    try:
        args.func(args)
    except KNOWN_ERRORS as e:
        if os.environ.get("MASKLAB_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"masklab: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
