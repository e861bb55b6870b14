"""Prompt-guided Mask Proposal on the canvas world. Launch:
``masklab train --recipe pmp-canvas --out runs/pmp`` (``prompt=false`` for the same proposer without the text).

Examples are the canvas referring examples of :mod:`masklab.seg.models.rows` (``seg`` format: only the image, the
expression and the referred object's mask are read); the held-out evaluation (world ``valid_world``) reports the
recall at IoU 0.5 of the referred object among the proposals (:mod:`masklab.objectives.pmp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.pmp import PMPObjective
from masklab.seg.models.rows import EXAMPLES_PER_CANVAS, CanvasRows, Layout
from masklab.seg.models.vocab import seg_tokenizer
from masklab.seg.pmp import Proposer
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["PMPRecipe"]


@dataclass
class PMPRecipe(WorldRecipe):
    canvases: int = 2000  # training canvases, 3 expressions each
    valid_canvases: int = 128  # held-out canvases (384 expressions)
    prompt: bool = True  # PMP: the queries read the expression after each decoder layer; false: they do not
    prompt_len: int = 8  # the longest canvas expression is 6 tokens
    width: int = 64
    queries: int = 8  # proposals per image (canvases have 2-5 objects)
    layers: int = 2  # decoder layers
    heads: int = 2
    eval_batches: int = 6  # 384 held-out expressions

    def __post_init__(self):
        super().__post_init__()
        self.check_positive("canvases", "valid_canvases", "prompt_len", "width", "queries", "layers", "heads")
        if self.width % (4 * self.heads) or self.image_size % 4:
            raise ValueError(f"width must be a multiple of 4 x heads and image_size of 4, got {self.width}, "
                             f"{self.heads}, {self.image_size}")  # fmt: skip

    def build(self) -> Task:
        tok = seg_tokenizer(max_number=self.image_size)
        layout = Layout(size=self.image_size, prompt=self.prompt_len, answer=2, grid=16)
        train = CanvasRows(self.world, EXAMPLES_PER_CANVAS * self.canvases, layout, "seg", tok)
        valid = CanvasRows(self.valid_world, EXAMPLES_PER_CANVAS * self.valid_canvases, layout, "seg", tok)
        with seeded(self.seed):
            model = Proposer(len(tok), self.prompt_len, self.prompt, self.image_size, self.width, self.queries,
                             self.layers, self.heads)  # fmt: skip
        objective = PMPObjective(model, layout)
        fingerprint = f"pmp-{self.image_size}px-w{self.world}x{self.canvases}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint, tok)


@register("pmp-canvas", "Prompt-guided Mask Proposal: queries cross-attend to the expression; recall@0.5")
def pmp_canvas():
    return PMPRecipe()
