"""Read-the-canvas question answering with Marten's mask-generation head (VQAMask). Launch:
``masklab train --recipe marten-canvas --out runs/marten`` (``mask_weight=0`` for the same reader without the mask
generator).

Example i is the i-th canvas of world ``world`` that a superlative question (``the leftmost object``, ...) names
one object of; the answer is that object's class word (:mod:`masklab.seg.marten`). The held-out evaluation (world
``valid_world``) reports answer accuracy, which never uses the mask generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.marten import MartenObjective
from masklab.seg.marten import MartenLayout, MartenRows, Reader
from masklab.seg.models.vocab import seg_tokenizer
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["MartenRecipe"]


@dataclass
class MartenRecipe(WorldRecipe):
    examples: int = 2000  # training question-answer examples (one per canvas)
    valid_examples: int = 256  # held-out examples
    mask_weight: float = 1.0  # weight of the mask generator's BCE + dice; 0: no mask generator (VQA alone)
    width: int = 64
    layers: int = 2  # transformer blocks over cells, question and answer slot
    heads: int = 2
    eval_batches: int = 4  # 256 held-out examples

    def __post_init__(self):
        super().__post_init__()
        self.check_positive("examples", "valid_examples", "width", "layers", "heads")
        if self.width % (4 * self.heads) or self.image_size % 4:
            raise ValueError(f"width must be a multiple of 4 x heads and image_size of 4, got {self.width}, "
                             f"{self.heads}, {self.image_size}")  # fmt: skip
        if self.mask_weight < 0:
            raise ValueError(f"mask_weight must be >= 0, got {self.mask_weight}")
        MartenLayout(self.image_size)  # validates the size

    def build(self) -> Task:
        tok = seg_tokenizer(max_number=self.image_size)
        layout = MartenLayout(self.image_size)
        train = MartenRows(self.world, self.examples, layout, tok)
        valid = MartenRows(self.valid_world, self.valid_examples, layout, tok)
        with seeded(self.seed):
            model = Reader(len(tok), layout.prompt, self.mask_weight > 0, self.width, self.layers, self.heads,
                           self.image_size)  # fmt: skip
        objective = MartenObjective(model, layout, self.mask_weight)
        fingerprint = f"marten-{self.image_size}px-w{self.world}x{self.examples}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint, tok)


@register("marten-canvas", "Marten VQAMask: canvas QA + a mask generator of all objects (mask_weight=0: QA alone)")
def marten_canvas():
    return MartenRecipe()
