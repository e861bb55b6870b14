"""N:M weight masks: the kept pattern of one layer, the candidate patterns, and per-layer sparsity.

masklab show sparsity                      # all-MiniLM-L6-v2 if installed, else a random MLP; magnitude 2:4
masklab show sparsity --model DIR --method wanda --calib stdlib --layer query --out wanda.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from masklab.sparsity.nm import nm_patterns
from masklab.viz._registry import PICTURE


@PICTURE.register("sparsity", "N:M weight masks: one layer's kept |W|, the candidate patterns, per-layer sparsity")
def sparsity_figure(
    out,
    dense: dict[str, torch.Tensor],
    report,
    layer: str | None = None,
    rows: int = 16,
    cols: int = 32,
    title: str = "",
) -> Path:
    """Draw a :class:`~masklab.sparsity.apply.SparsityReport` (``report``, with its masks) against the dense
    weights it pruned (``dense``: layer name -> weight before pruning); ``layer``: a substring of the layer to
    draw (default: the first); ``rows`` x ``cols``: the crop of its weight drawn."""
    from ._png import plt, save

    n, m = report.n, report.m
    names = [r.name for r in report.layers]
    pick = next((name for name in names if layer is None or layer in name), None)
    if pick is None:
        raise ValueError(f"no pruned layer name contains {layer!r}")
    w = dense[pick][:rows, :cols].abs()
    keep = report.masks[pick][:rows, :cols]

    fig = plt.figure(figsize=(16, 7), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[3, 1, 2.4], height_ratios=[1, 1])
    ax = fig.add_subplot(grid[:, 0])
    shown = torch.where(keep, w, torch.full_like(w, float("nan")))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # pruned (NaN) cells stay blank
    heat = ax.imshow(shown.numpy(), cmap=cmap, interpolation="nearest")
    fig.colorbar(heat, ax=ax, shrink=0.6, label="|W| (dense value of the kept weights)")
    for x in range(m, keep.shape[1], m):
        ax.axvline(x - 0.5, color="white", lw=0.8)
    ax.set_title(f"{pick}\n|W| of kept weights (blank = pruned), groups of {m} along the input dim", fontsize=9)
    ax.set_xlabel("input dimension")
    ax.set_ylabel("output dimension")

    pats = nm_patterns(n, m)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(pats.numpy(), cmap="Greens", vmin=0, vmax=1.3)
    ax.set_title(f"{pats.shape[0]} candidate {n}:{m} patterns", fontsize=9)
    ax.set_xticks(range(m))
    ax.set_yticks(range(pats.shape[0]))
    ax = fig.add_subplot(grid[1, 1])
    groups = report.masks[pick].reshape(report.masks[pick].shape[0], -1, m).float()  # (R, G, m)
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
    fig.suptitle(f"{title + ': ' if title else ''}{report.method} {n}:{m}", fontsize=11)
    return save(fig, out)
