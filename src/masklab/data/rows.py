"""Lazily made example rows: the one dataset shape of the world-generated tasks (canvases, dense scenes, clicks).

A task's ``train`` / ``valid`` is indexed by the training loop like a tensor of examples (``task.train[idx]``);
:class:`LazyRows` gives that indexing to worlds whose examples are generated from (world, index) and packed into
int16 rows, making each row when first asked for and keeping it.
"""

from __future__ import annotations

import abc

import numpy as np
import torch

__all__ = ["LazyRows", "split_rows", "unpack_pixels"]


def split_rows(rows: torch.Tensor, layout) -> dict[str, torch.Tensor]:
    """The parts of packed rows [B, layout.width], one per ``layout.spans`` entry (name -> (start, end)); rows of
    another shape are one ValueError."""
    if rows.dim() != 2 or rows.shape[1] != layout.width:
        raise ValueError(f"rows must be [B, {layout.width}] for this layout, got {tuple(rows.shape)}")
    return {k: rows[:, a:b] for k, (a, b) in layout.spans.items()}


def unpack_pixels(part: torch.Tensor, size: int) -> torch.Tensor:
    """An image part [B, 3 * size * size] of 0..255 values -> pixels [B, 3, size, size] float in [0, 1]."""
    return part.float().view(-1, 3, size, size) / 255.0


class LazyRows(abc.ABC):
    """Rows ``0 .. len(self) - 1``, each made by ``_make(i)`` on first use and kept. Indexing with an int, a slice
    or an index tensor returns int16 rows ``[..., layout.width]``, as a tensor of rows would; negative indices
    count from the end. Subclasses set ``self.layout`` (whose ``width`` is the row length) and ``self.n`` (or
    override ``__len__``), and define ``_make``."""

    n: int
    layout: object

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, int | np.integer):
            return self._row(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        elif torch.is_tensor(idx):
            idx = idx.reshape(-1).tolist()
        return torch.stack([self._row(int(i)) for i in idx]) if len(idx) else torch.zeros(0, self.layout.width)

    def _row(self, i: int) -> torch.Tensor:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        i %= n
        made = self.__dict__.setdefault("_made", {})
        if i not in made:
            made[i] = self._make(i)
        return made[i]

    @abc.abstractmethod
    def _make(self, i: int) -> torch.Tensor:
        """Row ``i`` (0 <= i < len(self)): an int16 tensor of ``layout.width`` values."""
