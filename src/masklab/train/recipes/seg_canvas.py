"""What the canvas referring-segmentation recipes share (``text4seg-canvas``, ``text4seg-bricks``, ``stamp-canvas``,
``mllmseg-canvas``): the data (packed rows of the canvas world, :mod:`masklab.seg.models.rows`), the tokenizer
(:mod:`masklab.seg.models.vocab`) and the tiny InternVL's size (:mod:`masklab.seg.models.vlm`). This module
registers no recipe.

Training examples come from world ``world`` (canvases ``0 .. canvases - 1``, three expressions each), held-out
ones from world ``valid_world``, so the held-out canvases are never trained on and every recipe and seed is scored
on the same examples. The held-out evaluation generates (it is what the gIoU is), so it runs at the end only by
default, over ``eval_batches`` x 32 examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.seg.models.rows import EXAMPLES_PER_CANVAS, CanvasRows, Layout
from masklab.seg.models.vlm import VLMSize
from masklab.seg.models.vocab import seg_tokenizer
from masklab.train.recipes.base import Task, WorldRecipe

__all__ = ["CanvasSegRecipe"]


@dataclass
class CanvasSegRecipe(WorldRecipe):
    answer_format: ClassVar[str] = "rrle"  # what the answer slot holds (masklab.seg.models.rows.FORMATS)
    canvases: int = 2000  # training canvases, 3 examples each (6000 examples, ~2.7 epochs at 500 x 32)
    valid_canvases: int = 64  # held-out canvases, 3 examples each
    patch_size: int = 4  # 16 x 16 ViT patches, merged 2 x 2 into 64 image tokens
    vision_dim: int = 64  # ViT width
    vision_layers: int = 2
    text_dim: int = 64  # Llama decoder width: the decoder is most of the compute of a descriptor answer
    text_layers: int = 2
    heads: int = 2  # 32-wide heads
    grid: int = 16  # Text4Seg's descriptor grid (its default, Table 6)
    prompt_len: int = 8  # prompt slot; the longest canvas expression is 6 tokens
    answer_len: int = 0  # answer slot; 0: the format's (256; plain descriptors 704)
    steps: int = 500  # from scratch; at seed 0 R-RLE answers are still all background (docs/seg_models.md)
    beta2: float = 0.95
    eval_batches: int = 6  # 192 held-out examples

    def __post_init__(self):
        super().__post_init__()
        self.check_positive("canvases", "valid_canvases", "prompt_len", "grid")
        if self.answer_len < 0:
            raise ValueError(f"answer_len must be >= 0 (0: the format's slot), got {self.answer_len}")
        self.layout  # validates the sizes  # noqa: B018
        self.size  # noqa: B018

    @property
    def layout(self) -> Layout:
        slot = self.answer_len or (704 if self.answer_format == "plain" else 256)
        return Layout(size=self.image_size, prompt=self.prompt_len, answer=slot, grid=self.grid)

    @property
    def size(self) -> VLMSize:
        return VLMSize(image_size=self.image_size, patch_size=self.patch_size, vision_dim=self.vision_dim,
                       vision_layers=self.vision_layers, text_dim=self.text_dim, text_layers=self.text_layers,
                       heads=self.heads, max_positions=self.layout.answer + self.prompt_len + 512)  # fmt: skip

    def build_objective(self, tokenizer):
        raise ValueError(f"recipe {self.name!r} does not define an objective")

    def build(self) -> Task:
        tok = seg_tokenizer(max_number=max(self.image_size, self.grid))
        fmt, L = self.answer_format, self.layout
        train = CanvasRows(self.world, EXAMPLES_PER_CANVAS * self.canvases, L, fmt, tok, **self.row_options())
        valid = CanvasRows(self.valid_world, EXAMPLES_PER_CANVAS * self.valid_canvases, L, fmt, tok,
                           **self.row_options())  # fmt: skip
        objective = self.build_objective(tok)
        tokens = objective.measure(train[: self.batch_size])
        fingerprint = (
            f"canvases-{self.image_size}px-w{self.world}x{self.canvases}-v{self.valid_world}-{fmt}-g{self.grid}"
        )
        info = {"example_tokens": tokens, "answer_format": fmt, "descriptor_grid": self.grid}
        return Task(objective, train, valid, fingerprint, tok, info)

    def row_options(self) -> dict:
        return {}
