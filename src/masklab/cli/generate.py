"""``masklab generate``: fill ``<mask>`` / ``<mask:N>`` placeholders with a masked-diffusion sampler."""

from __future__ import annotations

import sys

from ._args import add_sampler_arguments, sampler_options
from ._registry import COMMAND


def sample(args):
    """(tokenizer, Generation) for the prompt and sampler options in ``args``."""
    import torch

    from masklab.sample import generate, parse_prompt
    from masklab.train.checkpoint import load_masked_lm

    model, tok = load_masked_lm(args.model)
    ids = parse_prompt(args.prompt, tok, max_len=model.config.max_position_embeddings)
    options = sampler_options(args)
    if args.stop_at_eos:
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
    return tok, g


def draw(args, tok, g, out) -> None:
    from masklab.viz.generation import render_unmasking, token_pieces

    render_unmasking(
        out,
        pieces=token_pieces(tok, g.ids[0]),
        order=g.order[0].tolist(),
        title=f"{args.sampler} sampler, {g.nfe} model calls, seed {args.seed}",
    )
    print(f"wrote {out}", file=sys.stderr)


def run(args) -> None:
    tok, g = sample(args)
    print(tok.decode(g.ids[0]))
    print(f"{args.sampler}: {g.nfe} model calls", file=sys.stderr)
    if args.png:
        draw(args, tok, g, args.png)


@COMMAND.register("generate", "fill <mask> / <mask:N> placeholders with a masked-diffusion sampler")
def setup(p) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint folder")
    p.add_argument("--prompt", required=True, help="text with <mask> (one token) or <mask:N> (N tokens)")
    add_sampler_arguments(p)
    p.add_argument("--png", help="also draw the unmasking order to this PNG")
    p.set_defaults(func=run)
