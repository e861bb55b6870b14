"""Generative mask classification (OSM) on the canvas world. Launch:
``masklab train --recipe osm-canvas --out runs/osm`` (``head=closed`` for the closed-set classifier on the same
MaskQFormer tokens).

Every training example is one canvas (world ``world``) with its 2-5 objects, each classified from its ground-truth
mask and from a keyed proposal of it (:mod:`masklab.objectives.osm`); the held-out evaluation (world
``valid_world``) reports the share of exact class names answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.objectives.osm import OSMObjective
from masklab.seg.mask_adapter import MaskLayout, MaskRows
from masklab.seg.osm import HEADS, OSMClassifier
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["OSMRecipe"]


@dataclass
class OSMRecipe(WorldRecipe):
    canvases: int = 2000  # training canvases (2-5 objects each)
    valid_canvases: int = 128  # held-out canvases (about 450 objects, 5 masks each)
    head: str = "generate"  # generate (OSM: the class name letter by letter) or closed (a linear class head)
    low_iou: float = 0.5  # training proposals have target IoUs uniform in [low_iou, 0.95]
    width: int = 64  # backbone and token width (16 x 16 features)
    queries: int = 4  # MaskQFormer queries: the visual tokens per mask
    layers: int = 2  # the word decoder's causal blocks
    eval_batches: int = 4  # 128 held-out canvases

    def __post_init__(self):
        super().__post_init__()
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        self.check_positive("canvases", "valid_canvases", "width", "queries", "layers")
        if self.width % 4:
            raise ValueError(f"width must be a multiple of 4 (the first block is width / 4), got {self.width}")
        if not 0 <= self.low_iou < 0.95:
            raise ValueError(f"low_iou must be in [0, 0.95), got {self.low_iou}")
        MaskLayout(self.image_size)  # validates the size

    def build(self) -> Task:
        layout = MaskLayout(self.image_size)
        train, valid = (
            MaskRows(self.world, self.canvases, layout),
            MaskRows(self.valid_world, self.valid_canvases, layout),
        )
        with seeded(self.seed):
            model = OSMClassifier(self.head, self.width, self.queries, self.layers)
        objective = OSMObjective(model, layout, self.low_iou)
        fingerprint = f"masks-{self.image_size}px-w{self.world}x{self.canvases}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint)


@register("osm-canvas", "OSM: mask classes written as words from MaskQFormer tokens (head=closed: a class head)")
def osm_canvas():
    return OSMRecipe()
