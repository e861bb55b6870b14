"""Render an attention mask (or one per layer) as a PNG: rows are queries, columns keys, dark = may attend.

SPEC follows masklab.attention.spec: ``causal``, ``sliding_window:4``, ``document:3,5,8``,
``causal&sliding_window:8``, ``causal&(sliding_window:4|sinks:2)``, or a grid of layers such as
``layerwise:bidir=0-1,causal=2-3`` (groups separated by ``;`` when a mask needs commas:
``layerwise:document:4,4=0;causal=1-3``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masklab.attention.compile import to_dense
from masklab.attention.spec import is_layerwise, parse, parse_layerwise
from masklab.viz._registry import PICTURE


def _panels(spec: str, length: int | None) -> list[tuple[str, np.ndarray]]:
    plan = parse_layerwise(spec) if is_layerwise(spec) else {None: parse(spec)}
    fixed = {fn.seq_len for fn in plan.values() if getattr(fn, "seq_len", None) is not None}
    if length is None:
        length = fixed.pop() if len(fixed) == 1 else 16
    if length < 1 or length > 4096:
        raise ValueError(f"length must be in 1..4096, got {length}")
    out = []
    for layer, fn in plan.items():
        dense = to_dense(fn, length, length)
        title = fn.__name__ if layer is None else f"layer {layer}: {fn.__name__}"
        out.append((title, dense))
    return out


@PICTURE.register("attention", "who may see whom: an attention mask spec, or one panel per layer")
def attention_figure(out, spec: str, length: int | None = None, row: int = 0) -> Path:
    """Draw the mask ``spec`` (or one panel per layer of a layerwise spec) at ``length`` (default: the mask's own
    length, else 16); ``row``: the batch row for masks with per-row padding."""
    from masklab.viz._png import plt, save

    panels = _panels(spec, length)
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (ax, (title, dense)) in enumerate(zip(axes.flat, panels, strict=False)):
        img = dense[row if row < dense.shape[0] else 0, 0].numpy()
        ax.set_axis_on()
        ax.imshow(img, cmap="Blues", vmin=0, vmax=1.25, interpolation="nearest")
        ax.set_title(title if len(title) <= 36 else title[:33] + "...", fontsize=9)
        ax.set_xlabel("key")
        if i % cols == 0:
            ax.set_ylabel("query")
        L = img.shape[0]
        if L <= 32:
            ax.set_xticks(range(0, L, max(1, L // 8)))
            ax.set_yticks(range(0, L, max(1, L // 8)))
    fig.suptitle(f"{spec}  (L={panels[0][1].shape[-1]}, dark = may attend)", fontsize=10)
    return save(fig, out)
