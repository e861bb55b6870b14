"""``masklab generate``: fill ``<mask>`` / ``<mask:N>`` placeholders with a masked-diffusion sampler.

A block-diffusion run (recipe bd3-tiny) is decoded block by block, ``--cache`` keeping the keys and values of the
final blocks (:mod:`masklab.sample.block`); there ``--block-length`` is the size of those blocks. An ordinary
bidirectional MDM is decoded the same way with Fast-dLLM's approximate ``--approx-cache prefix`` or ``dual``
(:mod:`masklab.sample.approx_cache`), in blocks of ``--block-length`` (default 32). ``--adjust-head RUN`` samples
with a trained ADJUST head (:mod:`masklab.sample.adjust`), ``--adjust-k`` tokens per full forward."""

from __future__ import annotations

import sys

from ._args import add_sampler_arguments, positive_int, sampler_options
from ._registry import COMMAND


def sample(args):
    """(tokenizer, Generation) for the prompt and sampler options in ``args``."""
    import torch

    from masklab.sample import generate, parse_prompt
    from masklab.sample.block import saved_block_length
    from masklab.train.checkpoint import load_masked_lm

    for flag, default in (("cache", False), ("approx_cache", None), ("adjust_head", None)):  # ``show generation``
        setattr(args, flag, getattr(args, flag, default))  # has none of these flags
    if args.adjust_head is not None:
        return sample_adjust(args)
    if getattr(args, "adjust_k", None) is not None:
        raise ValueError("--adjust-k sets ADJUST's tokens per forward: it needs --adjust-head RUN")
    if args.approx_cache is not None:
        return sample_approx(args)
    if args.cache or saved_block_length(args.model) is not None:
        return sample_blocks(args)

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


def sample_blocks(args):
    """(tokenizer, Generation) of block diffusion decoding: a model trained by the bd3 recipe, blocks of its own
    size (or ``--block-length``) decoded in order, with the KV cache of the final blocks when ``--cache``. The
    prompt is right-padded to whole blocks; the padding is dropped from the result."""
    import torch

    from masklab.sample import parse_prompt
    from masklab.sample.block import block_generate, block_length_of, load_block_lm, pad_to_blocks

    model, tok = load_block_lm(args.model)
    ids = parse_prompt(args.prompt, tok, max_len=getattr(model.config, "max_position_embeddings", None))
    options = {k: v for k, v in sampler_options(args).items() if k != "block_length"}
    if args.stop_at_eos:
        options["eos_id"] = tok.eos_token_id
    block = args.block_length if args.block_length is not None else block_length_of(model)
    x = pad_to_blocks(torch.tensor([ids]), block, tok.pad_token_id) if block is not None else torch.tensor([ids])
    g = block_generate(
        model, x, mask_id=tok.mask_token_id, block_length=block, cache=args.cache, sampler=args.sampler,
        steps=args.steps, temperature=args.temperature, seed=args.seed, top_k=args.top_k, top_p=args.top_p,
        pad_id=tok.pad_token_id, return_order=True, **options,
    )  # fmt: skip
    g.ids, g.order = g.ids[:, : len(ids)], g.order[:, : len(ids)]
    return tok, g


def sample_approx(args):
    """(tokenizer, Generation) of semi-autoregressive decoding of a bidirectional MDM with Fast-dLLM's approximate
    prefix or dual cache, blocks of ``--block-length`` (default 32)."""
    import torch

    from masklab.sample import parse_prompt
    from masklab.sample.approx_cache import cached_generate
    from masklab.train.checkpoint import load_masked_lm

    if args.cache:
        raise ValueError("--approx-cache is for a bidirectional MDM, --cache for a block-diffusion run; pass one")
    model, tok = load_masked_lm(args.model)
    ids = parse_prompt(args.prompt, tok, max_len=model.config.max_position_embeddings)
    options = {k: v for k, v in sampler_options(args).items() if k != "block_length"}
    if args.stop_at_eos:
        options["eos_id"] = tok.eos_token_id
    g = cached_generate(
        model, torch.tensor([ids]), mask_id=tok.mask_token_id, cache=args.approx_cache,
        block_length=args.block_length if args.block_length is not None else 32, sampler=args.sampler,
        steps=args.steps, temperature=args.temperature, seed=args.seed, top_k=args.top_k, top_p=args.top_p,
        return_order=True, **options,
    )  # fmt: skip
    return tok, g


def sample_adjust(args):
    """(tokenizer, Generation) of ADJUST: ``--adjust-k`` tokens per full forward (default: the k the head was
    trained for), the first from the model, the rest from the head; the head must belong to ``--model``."""
    import torch

    from masklab.sample import parse_prompt
    from masklab.sample.adjust import adjust_generate, load_head
    from masklab.train.checkpoint import load_masked_lm

    if args.cache or args.approx_cache is not None or args.steps is not None or args.sampler != "confidence":
        raise ValueError("--adjust-head sets its own order and steps (--adjust-k per forward): drop --cache, "
                         "--approx-cache, --steps and --sampler")  # fmt: skip
    model, tok = load_masked_lm(args.model)
    head = load_head(args.adjust_head)
    ids = parse_prompt(args.prompt, tok, max_len=model.config.max_position_embeddings)
    options = sampler_options(args)
    if args.stop_at_eos:
        options["eos_id"] = tok.eos_token_id
    g = adjust_generate(
        model, torch.tensor([ids]), head=head, k=args.adjust_k or head.k, mask_id=tok.mask_token_id,
        temperature=args.temperature, seed=args.seed, top_k=args.top_k, top_p=args.top_p, return_order=True,
        **options,
    )  # fmt: skip
    return tok, g


def draw(args, tok, g, out) -> None:
    from masklab.viz.generation import render_unmasking, token_pieces

    # ADJUST's order is its own (--sampler stays at its default there): name it, with its head passes
    adjust = getattr(args, "adjust_head", None) is not None
    sampler = f"ADJUST ({g.stats['head_passes']} head passes)" if adjust else f"{args.sampler} sampler"
    render_unmasking(
        out,
        pieces=token_pieces(tok, g.ids[0]),
        order=g.order[0].tolist(),
        title=f"{sampler}, {g.nfe} model calls, seed {args.seed}",
    )
    print(f"wrote {out}", file=sys.stderr)


def run(args) -> None:
    tok, g = sample(args)
    print(tok.decode(g.ids[0]))
    if getattr(args, "adjust_head", None) is not None:
        print(f"adjust: {g.nfe} model calls, {g.stats['head_passes']} head passes", file=sys.stderr)
    else:
        print(f"{args.sampler}: {g.nfe} model calls", file=sys.stderr)
    if args.png:
        draw(args, tok, g, args.png)


@COMMAND.register("generate", "fill <mask> / <mask:N> placeholders with a masked-diffusion sampler")
def setup(p) -> None:
    p.add_argument("--model", required=True, help="run folder or checkpoint folder")
    p.add_argument("--prompt", required=True, help="text with <mask> (one token) or <mask:N> (N tokens)")
    add_sampler_arguments(p)
    p.add_argument(
        "--cache",
        action="store_true",
        help="block diffusion (a bd3 run): keep the keys and values of final blocks; --block-length sets the block",
    )
    p.add_argument(
        "--approx-cache",
        choices=("prefix", "dual"),
        default=None,
        help="bidirectional MDM: Fast-dLLM's approximate KV cache, refreshed every block of --block-length (32)",
    )
    p.add_argument("--adjust-head", default=None, help="an adjust run trained on --model: ADJUST joint sampling")
    p.add_argument("--adjust-k", type=positive_int, default=None, help="ADJUST: tokens per full forward (the head's k)")
    p.add_argument("--png", help="also draw the unmasking order to this PNG")
    p.set_defaults(func=run)
