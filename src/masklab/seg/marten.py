"""Marten on the canvas world: read-the-canvas question answering, with or without a mask-generation head that is
trained alongside and discarded at inference (VQAMask).

Marten (Wang et al., "Marten: Visual Question Answering with Mask Generation for Multi-modal Document
Understanding", CVPR 2025; github.com/PriNing/Marten holds no code, so this follows the paper's abstract) trains a
document MLLM on two tasks at once: VQA-based text parsing (the language-model loss on the answer) and **mask
generation**: an extra mask generator reads the model's visual representations and predicts the mask of the visual
text in the image, so that each visual text is aligned with its image region. The generator is dropped at
inference; it changes only what the shared model learns.

The canvas stand-ins: the "document" is a canvas and its "visual text" the objects painted on it (digits and shapes);
the question asks for one object by a superlative over all objects (:data:`QUESTIONS`: ``the leftmost object``,
``the largest object``, ...: the class is never in the question), and the answer is its class word, one token of
the canvas word tokenizer (:mod:`masklab.seg.models.vocab`). The mask target is the union of every object's mask
(all the visual text on the page, as Marten's MTMask6M masks cover all text, not the answer alone).

:class:`Reader` is the MLLM in miniature: a convolutional backbone to 16 x 16 cells (width 64), one transformer over
``[cells] [question words] [answer slot]`` (pre-norm :class:`masklab.seg.nets.Block`, padding hidden), and a
language-model head on the answer slot over the whole vocabulary. :class:`MaskGenerator` reads the transformer's
outputs at the 256 cell positions (the LLM's hidden states of the visual tokens), reshaped to 16 x 16, through a
convolution, a 2x upsampling and a 1 x 1 convolution to mask logits at 32 x 32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masklab.data.canvases import Canvas, canvas, refers_to
from masklab.data.rows import LazyRows, split_rows, unpack_pixels
from masklab.seg.nets import Block, cell_features, conv_block

__all__ = ["QUESTIONS", "question_of", "MartenLayout", "MartenRows", "MaskGenerator", "Reader"]

QUESTIONS = tuple(f"the {w} object" for w in ("largest", "smallest", "leftmost", "rightmost", "topmost", "bottommost"))


def question_of(c: Canvas) -> tuple[str, int] | None:
    """The canvas' question and the object it asks for: among :data:`QUESTIONS` that name exactly one object, the
    one at position ``index`` modulo their number (so consecutive canvases ask different questions); None when no
    superlative names one object."""
    named = [(q, hit[0]) for q in QUESTIONS if len(hit := refers_to(q, c.masks, c.labels)) == 1]
    return named[c.index % len(named)] if named else None


class MartenLayout:
    """Slots of a packed row: image bytes (3 S S), the union of the objects' masks (S S), the question (``prompt``
    ids, left-padded with 0) and the answer (one id)."""

    def __init__(self, size: int = 64, prompt: int = 4):
        if size < 64 or prompt < 3:
            raise ValueError(f"size must be >= 64 and prompt >= 3 (questions are 3 words), got {size} and {prompt}")
        self.size, self.prompt = size, prompt
        n = size * size
        self.spans = {"image": (0, 3 * n), "mask": (3 * n, 4 * n), "question": (4 * n, 4 * n + prompt),
                      "answer": (4 * n + prompt, 4 * n + prompt + 1)}  # fmt: skip
        self.width = self.spans["answer"][1]

    def unpack(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        S, part = self.size, split_rows(rows, self)
        return {
            "pixels": unpack_pixels(part["image"], S),
            "mask": part["mask"].view(-1, S, S) != 0,
            "question": part["question"].long(),
            "answer": part["answer"][:, 0].long(),
        }


class MartenRows(LazyRows):
    """Question-answer examples of one world as packed int16 rows: row i is canvas (world, i) with its question
    (:func:`question_of`; a canvas with none is skipped, so row i is the i-th canvas that has one), made when first
    indexed."""

    def __init__(self, world: int, n: int, layout: MartenLayout, tokenizer):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.world, self.n, self.layout, self.tokenizer = world, n, layout, tokenizer
        self._in_order: list[torch.Tensor] = []  # rows are made in order: row k is the k-th canvas with a question
        self._next_canvas = 0

    def _make(self, i: int) -> torch.Tensor:
        while len(self._in_order) <= i:
            self._make_next()
        return self._in_order[i]

    def _make_next(self) -> None:
        from masklab.seg.models.vocab import encode

        L, sp = self.layout, self.layout.spans
        c = canvas(self.world, self._next_canvas, L.size)
        self._next_canvas += 1
        qa = question_of(c)
        if qa is None:
            return
        question, n = qa
        ids = encode(self.tokenizer, question)
        row = torch.zeros(L.width, dtype=torch.int16)
        row[slice(*sp["image"])] = torch.from_numpy(np.rint(c.image * 255).astype(np.int16).transpose(2, 0, 1).ravel())
        row[slice(*sp["mask"])] = torch.from_numpy(c.masks.any(0).astype(np.int16).ravel())
        row[sp["question"][1] - len(ids) : sp["question"][1]] = torch.tensor(ids, dtype=torch.int16)
        row[sp["answer"][0]] = encode(self.tokenizer, " " + c.labels[n])[0]  # the word as it follows the question
        self._in_order.append(row)


class MaskGenerator(nn.Module):
    """Cell outputs [B, 256, D] -> mask logits [B, 32, 32]: reshape to 16 x 16, a convolution block, 2x nearest
    upsampling, a convolution block and a 1 x 1 convolution."""

    def __init__(self, dim: int):
        super().__init__()
        self.block1, self.block2 = conv_block(dim, dim // 2), conv_block(dim // 2, dim // 2)
        self.out = nn.Conv2d(dim // 2, 1, 1)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        B, N, D = cells.shape
        g = int(N**0.5)
        x = self.block1(cells.transpose(1, 2).reshape(B, D, g, g))
        x = self.block2(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.out(x)[:, 0]


class Reader(nn.Module):
    """(pixels [B, 3, S, S], question ids [B, P]) -> answer logits [B, V] and the cell outputs [B, 256, D];
    ``mask_head=True`` adds the :class:`MaskGenerator` (used only by the training loss)."""

    def __init__(self, vocab_size: int, prompt_len: int, mask_head: bool = True, width: int = 64, layers: int = 2,
                 heads: int = 2, size: int = 64):  # fmt: skip
        super().__init__()
        self.backbone = cell_features(width)  # (B, width, 16, 16)
        cells = (size // 4) ** 2
        self.cell_pos = nn.Parameter(torch.randn(1, cells, width) * 0.02)
        self.word = nn.Embedding(vocab_size, width)
        self.word_pos = nn.Parameter(torch.randn(1, prompt_len, width) * 0.02)
        self.answer_slot = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab_size)
        self.mask_head = MaskGenerator(width) if mask_head else None

    def forward(self, pixels: torch.Tensor, question: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = len(pixels)
        cells = self.backbone(pixels - 0.5).flatten(2).transpose(1, 2) + self.cell_pos  # (B, 256, D)
        words = self.word(question) + self.word_pos[:, : question.shape[1]]  # (B, P, D)
        x = torch.cat([cells, words, self.answer_slot.expand(B, -1, -1)], 1)
        keep = torch.cat([torch.ones(B, cells.shape[1], dtype=torch.bool, device=x.device), question != 0,
                          torch.ones(B, 1, dtype=torch.bool, device=x.device)], 1)  # fmt: skip
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)
        return self.lm_head(x[:, -1]), x[:, : cells.shape[1]]
