"""``masklab eval``: held-out metrics of a checkpoint (:func:`masklab.train.evaluate.evaluate_checkpoint`)."""

from __future__ import annotations

import json

from ._args import positive_int
from ._registry import COMMAND


def run(args) -> None:
    from masklab.train.evaluate import evaluate_checkpoint

    device = "cpu" if args.cpu else None
    result = evaluate_checkpoint(args.model, data=args.data, batches=args.batches, device=device, recipe=args.recipe)
    if "nll_bound_bits" in result:
        unigram = result.get("valid_unigram_entropy_bits")
        print(
            f"valid NLL bound: {result['nll_bound_bits']:.3f} bits/token"
            + (f" (unigram entropy of the valid split: {unigram:.3f})" if unigram is not None else "")
        )
    print(json.dumps(result, indent=2))


@COMMAND.register("eval", "held-out metrics of a checkpoint (MDM: NLL bound in bits/token)")
def setup(p) -> None:
    p.add_argument("--model", required=True, help="run folder, checkpoint folder or Hugging Face model folder")
    p.add_argument("--data", help="evaluate on other data than the run's (required for a plain Hugging Face folder)")
    p.add_argument("--recipe", help="plain Hugging Face folder: the objective (default mlm, or ar for a causal LM)")
    p.add_argument("--batches", type=positive_int, default=None, help="held-out batches of 32 (default: all)")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU")
    p.set_defaults(func=run)
