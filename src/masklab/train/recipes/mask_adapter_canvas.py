"""Mask classification on the canvas world with Mask-Adapter. Launch:
``masklab train --recipe mask-adapter-canvas --out runs/adapter`` (``pool=mask consistency=0`` for the mask-pooling
baseline, as FC-CLIP classifies masks).

Every training example is one canvas (world ``world``) with its 2-5 objects; for ``gt_warmup`` steps each object
is classified from its ground-truth mask, then from its ground-truth mask and from a keyed proposal of it
(:mod:`masklab.objectives.mask_adapter`). The held-out
evaluation (world ``valid_world``) reports accuracy against the proposals' IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.data.canvases import CATEGORIES
from masklab.objectives.mask_adapter import MaskAdapterObjective
from masklab.seg.mask_adapter import POOLS, MaskClassifier, MaskLayout, MaskRows
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["MaskAdapterRecipe"]


@dataclass
class MaskAdapterRecipe(WorldRecipe):
    canvases: int = 2000  # training canvases (2-5 objects each)
    valid_canvases: int = 128  # held-out canvases (about 450 objects, 11 masks each)
    pool: str = "adapter"  # adapter (Mask-Adapter) or mask (mask pooling, FC-CLIP)
    consistency: float = 5.0  # mask-consistency loss weight (the reference's COS_WEIGHT); 0: none
    low_iou: float = 0.5  # training proposals have target IoUs uniform in [low_iou, 0.95]
    gt_warmup: int = 100  # stage 1 (ground-truth masks only) for this many steps, then mixed-mask training
    width: int = 64  # backbone width (16 x 16 features)
    maps: int = 16  # activation maps per mask (the reference's NUM_OUTPUT_MAPS)
    eval_batches: int = 4  # 128 held-out canvases

    def __post_init__(self):
        super().__post_init__()
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        self.check_positive("canvases", "valid_canvases", "width", "maps")
        if self.consistency < 0 or not 0 <= self.low_iou < 0.95:
            raise ValueError("consistency must be >= 0 and low_iou in [0, 0.95)")
        if self.gt_warmup < 0:
            raise ValueError(f"gt_warmup must be >= 0 (steps of ground-truth masks only), got {self.gt_warmup}")
        MaskLayout(self.image_size)  # validates the size

    def build(self) -> Task:
        layout = MaskLayout(self.image_size)
        train, valid = (
            MaskRows(self.world, self.canvases, layout),
            MaskRows(self.valid_world, self.valid_canvases, layout),
        )
        with seeded(self.seed):
            model = MaskClassifier(len(CATEGORIES), self.pool, self.width, self.maps)
        objective = MaskAdapterObjective(model, layout, self.consistency, self.low_iou, self.gt_warmup)
        fingerprint = f"masks-{self.image_size}px-w{self.world}x{self.canvases}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint)


@register("mask-adapter-canvas", "Mask-Adapter: activation-map pooling + mask consistency; accuracy vs proposal IoU")
def mask_adapter_canvas():
    return MaskAdapterRecipe()
