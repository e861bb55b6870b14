"""Unmasking order of a masked-diffusion sample: each generated token coloured by the step that revealed
it."""

from __future__ import annotations

from masklab.viz._png import plt, save
from masklab.viz._registry import PICTURE

__all__ = ["render_unmasking", "token_pieces"]

_SHOW = {" ": "␣", "\t": "⇥"}


def _label(piece: str) -> str:
    """Visible text for a token: spaces and tabs as symbols, other unprintable bytes as a dot."""
    return "".join(_SHOW.get(c, c if c.isprintable() else "·") for c in piece)


@PICTURE.register("generation", "unmasking order of a masked-diffusion sample: each token coloured by its step")
def render_unmasking(out, pieces: list[str], order: list[int], title: str = "", width: int = 40):
    """Draw tokens as cells in reading order (a new row at each newline or every ``width`` cells).

    ``pieces``: text of each token; ``order``: reveal step per token, -1 for prompt tokens.
    """
    rows, row = [], []
    for piece, step in zip(pieces, order, strict=True):
        parts = piece.split("\n")
        for j, part in enumerate(parts):
            if part or len(parts) == 1:
                row.append((part, step))
            if j < len(parts) - 1:
                row.append(("↵", step))
                rows.append(row)
                row = []
            if len(row) >= width:
                rows.append(row)
                row = []
    rows.append(row)
    n_steps = max([s for s in order if s >= 0], default=0) + 1
    ncols = max(1, max(len(r) for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * ncols + 1.5), 0.42 * len(rows) + 1.2))
    cmap = plt.get_cmap("viridis")
    for y, r in enumerate(rows):
        for x, (text, step) in enumerate(r):
            color = "#e8e8e8" if step < 0 else cmap(step / max(1, n_steps - 1))
            ax.add_patch(plt.Rectangle((x, -y - 1), 0.95, 0.9, color=color))
            ink = "black" if step < 0 or step / max(1, n_steps - 1) > 0.6 else "white"
            ax.text(
                x + 0.47,
                -y - 0.55,
                _label(text)[:3],
                ha="center",
                va="center",
                fontsize=8,
                color=ink,
                family="monospace",
            )
    ax.set_xlim(0, ncols)
    ax.set_ylim(-len(rows) - 0.1, 0.1)
    ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, n_steps - 1)))
    fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.01, label="step revealed (grey: prompt)")
    ax.set_title(title or f"unmasking order over {n_steps} steps", fontsize=10)
    return save(fig, out)


def token_pieces(tokenizer, ids) -> list[str]:
    """The text each token contributes (byte-level tokens decode one by one)."""
    return [tokenizer.decode([int(i)]) for i in ids]
