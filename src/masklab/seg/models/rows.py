"""Referring-segmentation examples of the canvas world (:mod:`masklab.data.canvases`) packed as one int16 row each,
so the training loop moves them like any tensor of examples.

Example ``i`` of a world is canvas ``(world, i // 3)`` with the expression ``expressions[(i % 3) * n // 3]`` of
its ``n`` (three expressions spread over its objects). A row holds, in this order:

* the image, ``3 x size x size`` bytes (the canvas' float image rounded to 0..255);
* the target mask, ``size x size`` (0/1): the pixels of the one object the expression names;
* the prompt slot, ``prompt`` token ids, left-padded with ``<pad>`` = 0 (so every answer starts at one column);
* the answer slot, ``answer`` token ids ending in ``<eos>``, right-padded; what it says is the row's format;
* the cells, ``grid x grid`` (0/1): the target mask resized to the descriptor grid with Text4Seg's nearest rule
  (:func:`masklab.seg.descriptors.mask_to_grid`), STAMP's per-patch labels.

Formats (:data:`FORMATS`), one per way of writing a mask as an answer:

* ``rrle``: Text4Seg's semantic descriptors with R-RLE, the label being the referring expression itself
  (``create_refcoco_llava.py`` labels every object cell with ``sentence['sent']``, the rest ``others``);
* ``plain``: the same grid as the plain line of every cell label joined by ``|``;
* ``bricks``: Text4Seg++'s box-wise descriptor, ``<p>expression</p><box>[x1, y1, x2, y2]</box><seg>1/0 cells</seg>``
  (:func:`masklab.seg.descriptors.encode_bricks`, ``brick_grid`` cells at most);
* ``seg``: the single token ``<seg>`` (STAMP's text answer, after which the mask tokens are filled in one pass);
* ``seg-token``: the single token ``[SEG]`` (MLLMSeg's segmentation token, whose hidden state queries the mask
  decoder).

Rows are made when first asked for and kept (a canvas takes ~16 ms to draw), so building a task is instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from masklab.data.canvases import Canvas, canvas
from masklab.data.rows import LazyRows, split_rows, unpack_pixels
from masklab.seg.descriptors import encode_bricks, encode_descriptors, mask_to_brick, mask_to_grid
from masklab.seg.models.vocab import encode

__all__ = ["FORMATS", "EXAMPLES_PER_CANVAS", "Layout", "Batch", "CanvasRows", "example", "answer_text", "read_answer"]

EXAMPLES_PER_CANVAS = 3


@dataclass(frozen=True)
class Layout:
    """Sizes of the slots of a packed row; every row of a task has this layout."""

    size: int = 64  # image side in pixels (canvases are square, at least 64)
    prompt: int = 8  # prompt slot: the longest canvas expression is 6 tokens ("the 7 left of the 3")
    answer: int = 256  # answer slot (tokens, <eos> included); a longer answer is a ValueError
    grid: int = 16  # descriptor grid (Text4Seg's 16 x 16)

    def __post_init__(self):
        for k in ("size", "prompt", "answer", "grid"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"layout {k} must be a positive int, got {v!r}")
        if self.size < 64:
            raise ValueError(f"layout size must be at least 64 (the canvas world's smallest), got {self.size}")

    @property
    def spans(self) -> dict[str, tuple[int, int]]:
        """(start, end) of each slot in a row."""
        sizes = {"image": 3 * self.size**2, "mask": self.size**2, "prompt": self.prompt, "answer": self.answer,
                 "cells": self.grid**2}  # fmt: skip
        out, at = {}, 0
        for k, n in sizes.items():
            out[k] = (at, at + n)
            at += n
        return out

    @property
    def width(self) -> int:
        return self.spans["cells"][1]


@dataclass
class Batch:
    """A batch of rows, unpacked (see the module docstring for what each part is)."""

    pixels: torch.Tensor  # (B, 3, S, S) float in [0, 1]
    mask: torch.Tensor  # (B, S, S) bool
    prompt: torch.Tensor  # (B, P) long, left-padded with 0
    answer: torch.Tensor  # (B, A) long, <eos>-terminated, right-padded with 0
    cells: torch.Tensor  # (B, G, G) bool

    @classmethod
    def unpack(cls, rows: torch.Tensor, layout: Layout) -> Batch:
        s, g, part = layout.size, layout.grid, split_rows(rows, layout)
        return cls(
            pixels=unpack_pixels(part["image"], s),
            mask=part["mask"].view(-1, s, s) != 0,
            prompt=part["prompt"].long(),
            answer=part["answer"].long(),
            cells=part["cells"].view(-1, g, g) != 0,
        )

    def trimmed(self) -> Batch:
        """The batch with the answer slot cut after its longest answer (pure padding costs compute)."""
        used = int((self.answer != 0).any(0).nonzero().max()) + 1 if (self.answer != 0).any() else 1
        return Batch(self.pixels, self.mask, self.prompt, self.answer[:, :used], self.cells)


# --------------------------------------------------------------------------------------------- formats
def _rrle(c: Canvas, expression: str, n: int, layout: Layout, brick_grid: int) -> str:
    return encode_descriptors(mask_to_grid(c.masks[n], layout.grid, label=expression))


def _plain(c: Canvas, expression: str, n: int, layout: Layout, brick_grid: int) -> str:
    return encode_descriptors(mask_to_grid(c.masks[n], layout.grid, label=expression), rle=False)


def _bricks(c: Canvas, expression: str, n: int, layout: Layout, brick_grid: int) -> str:
    return encode_bricks([mask_to_brick(c.masks[n], expression, brick_grid)])


FORMATS: dict[str, Callable[..., str]] = {
    "rrle": _rrle,
    "plain": _plain,
    "bricks": _bricks,
    "seg": lambda *_: "<seg>",
    "seg-token": lambda *_: "[SEG]",
}


def example(world: int, index: int, size: int = 64) -> tuple[Canvas, str, int]:
    """(canvas, expression, object) of example ``index`` of world ``world`` (see the module docstring)."""
    c = canvas(world, index // EXAMPLES_PER_CANVAS, size)
    text, n = c.expressions[(index % EXAMPLES_PER_CANVAS) * len(c.expressions) // EXAMPLES_PER_CANVAS]
    return c, text, n


def answer_text(fmt: str, c: Canvas, expression: str, n: int, layout: Layout, brick_grid: int = 8) -> str:
    """The answer of format ``fmt`` (see :data:`FORMATS`) for object ``n`` of ``c`` named by ``expression``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt](c, expression, n, layout, brick_grid)


# --------------------------------------------------------------------------------------------- rows
class CanvasRows(LazyRows):
    """The packed rows of examples ``0 .. n - 1`` of one world, made when first indexed and kept.

    Indexing with an int, a slice or an index tensor returns int16 rows ``[..., layout.width]``, as a tensor of
    examples would (the training loop indexes ``task.train[idx]``)."""

    def __init__(self, world: int, n: int, layout: Layout, fmt: str, tokenizer, brick_grid: int = 8):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
        if layout.grid > layout.size:
            raise ValueError(f"grid {layout.grid} is finer than the {layout.size}px image")
        self.world, self.n, self.layout, self.fmt, self.tok, self.brick_grid = (
            world,
            n,
            layout,
            fmt,
            tokenizer,
            brick_grid,
        )

    def _make(self, i: int) -> torch.Tensor:
        L = self.layout
        c, text, n = example(self.world, i, L.size)
        prompt = encode(self.tok, text)
        answer = encode(self.tok, answer_text(self.fmt, c, text, n, L, self.brick_grid)) + [self.tok.eos_token_id]
        for name, ids, cap in (("prompt", prompt, L.prompt), ("answer", answer, L.answer)):
            if len(ids) > cap:
                raise ValueError(
                    f"the {name} of example {i} (world {self.world}) has {len(ids)} tokens, more than its slot of "
                    f"{cap}; raise the recipe's {name}_len"
                )
        row = torch.zeros(L.width, dtype=torch.int16)
        sp = L.spans
        row[slice(*sp["image"])] = torch.from_numpy(np.rint(c.image * 255).astype(np.int16).transpose(2, 0, 1).ravel())
        row[slice(*sp["mask"])] = torch.from_numpy(c.masks[n].ravel().astype(np.int16))
        row[sp["prompt"][1] - len(prompt) : sp["prompt"][1]] = torch.tensor(prompt, dtype=torch.int16)  # left-padded
        row[sp["answer"][0] : sp["answer"][0] + len(answer)] = torch.tensor(answer, dtype=torch.int16)
        cells = mask_to_grid(c.masks[n], L.grid, label="1", background="0") == "1"
        row[slice(*sp["cells"])] = torch.from_numpy(cells.ravel().astype(np.int16))
        return row


# --------------------------------------------------------------------------------------------- reading answers
def read_answer(fmt: str, text: str, layout: Layout) -> tuple[np.ndarray, bool]:
    """(predicted mask [size, size] bool, whether ``text`` was well formed) of a generated answer, read as the
    reference evaluations read it: descriptors leniently on a ``grid x grid`` shape, every label but ``others``
    being the object (Text4Seg's ``translate_sequence`` then ``pred_mask > 0``), upsampled with
    :func:`~masklab.seg.descriptors.grid_to_mask`; bricks leniently, the union of their masks. Unreadable text
    is an empty mask (Text4Seg's ``except: pred_mask = [0] * h * w``)."""
    from masklab.seg.descriptors import brick_to_mask, decode_bricks, decode_descriptors, grid_to_mask

    size = (layout.size, layout.size)
    if fmt in ("rrle", "plain"):
        shape = (layout.grid, layout.grid)
        try:
            decode_descriptors(text, strict=True, shape=shape)
            ok = True
        except ValueError:
            ok = False
        grid = decode_descriptors(text, strict=False, shape=shape).grid
        return (grid_to_mask(grid, size) if grid.size else np.zeros(size, bool)), ok
    if fmt == "bricks":
        try:
            ok = len(decode_bricks(text, strict=True)) > 0
        except ValueError:
            ok = False
        out = np.zeros(size, bool)
        for b in decode_bricks(text, strict=False):
            try:
                out |= brick_to_mask(b, size)
            except ValueError:  # a box outside the image or smaller than its grid: no pixels
                ok = False
        return out, ok
    raise ValueError(f"answers of format {fmt!r} are not text masks; read them with their model")
