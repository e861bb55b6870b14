"""``masklab sparsify``: prune a Hugging Face or masklab checkpoint folder to N:M and save it
(:func:`masklab.sparsity.prune_folder.prune_folder`).

    masklab sparsify --model DIR --method wanda --calib stdlib --out DIR_2of4
"""

from __future__ import annotations

from ._registry import COMMAND

CALIB_HELP = "calibration text: 'stdlib' (stdlib docstrings) or a .txt file with one text per line"


def run(args) -> None:
    from masklab.sparsity.prune_folder import prune_folder

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


def method_argument(p) -> None:
    from masklab.sparsity.apply import PRUNER

    p.add_argument("--method", default="magnitude", choices=PRUNER.names(), help="masklab list sparsity")


@COMMAND.register("sparsify", "prune a checkpoint folder to N:M (magnitude, Wanda, SparseGPT, MaskLLM) and save it")
def setup(p) -> None:
    p.add_argument("--model", required=True, help="run folder, masklab checkpoint or Hugging Face model folder")
    method_argument(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=2, help="weights kept per group")
    p.add_argument("--m", type=int, default=4, help="group size along the input dimension")
    p.add_argument("--calib", default=None, help=CALIB_HELP)
    p.add_argument("--calib-samples", type=int, default=64, help="number of calibration texts")
    p.add_argument("--max-length", type=int, default=128, help="tokens per calibration text")
    p.add_argument("--batch-size", type=int, default=16, help="calibration batch size")
    p.add_argument("--filter", default=None, help="regex on layer names (default: all Linear but heads)")
    p.add_argument("--steps", type=int, default=100, help="MaskLLM training steps")
    p.add_argument("--pad", action="store_true", help="pad input dims that m does not divide")
    p.set_defaults(func=run)
