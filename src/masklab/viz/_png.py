"""Shared matplotlib set-up: headless backend and atomic PNG writes."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, out: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` to ``out`` atomically (temp file, then rename) and close it."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {out}")
    if not out.parent.is_dir():
        if not out.parent.parent.is_dir():
            raise ValueError(f"out: the folder {out.parent} does not exist, nor its parent {out.parent.parent}")
        out.parent.mkdir()
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, out)
    return out
