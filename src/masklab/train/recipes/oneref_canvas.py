"""OneRef's Mask Referring Modeling with box regression on the canvas world. Launch:
``masklab train --recipe oneref-canvas --out runs/oneref`` (``masking=random`` for count-matched random masking).

Examples are the canvas referring examples of :mod:`masklab.seg.models.rows` (``seg`` format: only the image, the
expression and the object's mask are read); the held-out evaluation grounds the expressions of world
``valid_world`` from whole inputs (Acc@0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.oneref import MASKINGS, OneRefObjective
from masklab.seg.models.rows import EXAMPLES_PER_CANVAS, CanvasRows, Layout
from masklab.seg.models.vocab import seg_tokenizer
from masklab.seg.oneref import OneTower
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["OneRefRecipe"]


@dataclass
class OneRefRecipe(WorldRecipe):
    canvases: int = 2000  # training canvases, 3 expressions each
    valid_canvases: int = 128  # held-out canvases (384 expressions)
    patch: int = 8  # 8 x 8 patches of 8 pixels
    dim: int = 64  # tower width
    layers: int = 4
    heads: int = 2
    prompt_len: int = 8  # the longest canvas expression is 6 tokens
    masking: str = "referring"  # referring (OneRef's dynamic masking) or random (as many patches, anywhere)
    mim_ratio: float = 0.35  # beta: the mask ratio outside the referred region (reference --mim_mask_ratio)
    inside_ratio: float = 0.75  # gamma: the mask ratio inside it (reference --dynamic_mask_ratio)
    text_mask_prob: float = 0.4  # share of the words masked (reference --text_mask_prob)
    steps: int = 600
    eval_batches: int = 6  # 384 held-out expressions

    def __post_init__(self):
        super().__post_init__()
        if self.masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {self.masking!r}")
        self.check_positive("canvases", "valid_canvases", "patch", "dim", "layers", "heads", "prompt_len")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch {self.patch}")
        for k in ("mim_ratio", "inside_ratio", "text_mask_prob"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {getattr(self, k)}")

    def build(self) -> Task:
        tok = seg_tokenizer(max_number=self.image_size)
        layout = Layout(size=self.image_size, prompt=self.prompt_len, answer=2, grid=16)
        train = CanvasRows(self.world, EXAMPLES_PER_CANVAS * self.canvases, layout, "seg", tok)
        valid = CanvasRows(self.valid_world, EXAMPLES_PER_CANVAS * self.valid_canvases, layout, "seg", tok)
        with seeded(self.seed):
            model = OneTower(len(tok), self.prompt_len, self.image_size, self.patch, self.dim, self.layers, self.heads)
        objective = OneRefObjective(model, tok, layout, self.masking, self.text_mask_prob, self.mim_ratio,
                                    self.inside_ratio)  # fmt: skip
        fingerprint = f"oneref-{self.image_size}px-w{self.world}x{self.canvases}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint, tok, rows=8)


@register("oneref-canvas", "OneRef: one tower, referring-aware MIM/MLM with target-relation scores, box Acc@0.5")
def oneref_canvas():
    return OneRefRecipe()
