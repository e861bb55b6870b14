"""Expert load of an MoE model: the routing mask summed over tokens, one histogram per layer.

masklab show moe RUN --out load.png        # a run of the moe-tiny recipe, on its held-out windows
"""

from __future__ import annotations

from pathlib import Path

import torch

from masklab.viz._registry import PICTURE


@PICTURE.register("moe", "MoE expert load: tokens per expert in each layer (a heatmap and per-layer histograms)")
def expert_load_figure(out, load, dropped=None, title: str = "") -> Path:
    """Draw ``load`` ``(layers, E)`` tokens per expert (:func:`masklab.train.recipes.moe.expert_loads`) as the
    share of each layer's routed pairs per expert, with the balanced share 1/E marked; ``dropped`` ``(layers,)``:
    the share of tokens no expert computed, shown per layer."""
    from masklab.viz._png import plt, save

    load = torch.as_tensor(load, dtype=torch.float64)
    if load.dim() != 2 or load.shape[0] < 1 or load.shape[1] < 1:
        raise ValueError(f"load must be a (layers, experts) table, got shape {tuple(load.shape)}")
    n_layers, E = load.shape
    share = load / load.sum(1, keepdim=True).clamp(min=1)  # (layers, E)
    cols = min(n_layers, 4)
    rows = -(-n_layers // cols)
    fig = plt.figure(figsize=(3.0 * cols + 4, 2.4 * rows + 0.6), layout="constrained")
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.6] + [1] * cols)
    ax = fig.add_subplot(grid[:, 0])
    heat = ax.imshow(share.numpy(), cmap="viridis", vmin=0, aspect="auto", interpolation="nearest")
    fig.colorbar(heat, ax=ax, shrink=0.7, location="left", label="share of the layer's routed tokens")
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_xticks(range(E))
    ax.set_yticks(range(n_layers))
    ax.set_title("expert load", fontsize=9)
    for i in range(n_layers):
        ax = fig.add_subplot(grid[i // cols, 1 + i % cols])
        ax.bar(range(E), share[i].numpy(), color="tab:blue")
        ax.axhline(1 / E, color="tab:red", lw=1, ls="--")  # perfectly balanced
        ax.set_ylim(0, max(float(share.max()) * 1.1, 1.5 / E))
        ax.set_xticks(range(E))
        label = f"layer {i}" + (f", {float(dropped[i]):.1%} dropped" if dropped is not None else "")
        ax.set_title(label, fontsize=8)
    fig.suptitle(f"{title + ': ' if title else ''}tokens per expert (dashed: balanced, 1/{E})", fontsize=10)
    return save(fig, out)
