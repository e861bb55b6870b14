"""MAYOR's mask head on dense overlapping instances. Launch: ``masklab train --recipe mayor-dense --out runs/mayor``
(``targets=plain`` for text/non-text pixel targets, ``decoder=deconv`` for Mask R-CNN's decoder).

Training scenes come from world ``world`` of :func:`masklab.seg.mayor.dense_scene`, held-out ones from
``valid_world``; proposals are jittered ground-truth boxes (:mod:`masklab.objectives.mayor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.objectives.mayor import MayorObjective
from masklab.seg.mayor import DECODERS, TARGETS, DenseLayout, DenseRows, RoIMaskNet
from masklab.train.recipes.base import Task, WorldRecipe, register, seeded

__all__ = ["MayorRecipe"]


@dataclass
class MayorRecipe(WorldRecipe):
    fixed_data: ClassVar[str] = "dense"  # the one data this recipe reads
    data: str = "dense"  # the only data: dense lines of digits, drawn at run time
    scenes: int = 2000  # training scenes (about 28 instances each)
    valid_scenes: int = 64  # held-out scenes (about 1800 instances)
    targets: str = "instance"  # instance (MAYOR's instance-aware learning) or plain (every foreground pixel)
    decoder: str = "mlp"  # mlp (MAYOR) or deconv (Mask R-CNN)
    rois: int = 12  # instances sampled per training image
    width: int = 32  # backbone and head width
    roi: int = 8  # RoIAlign output side; masks are 2 roi x 2 roi
    batch_size: int = 16
    eval_batches: int = 4  # 64 held-out scenes

    def __post_init__(self):
        super().__post_init__()
        if self.targets not in TARGETS or self.decoder not in DECODERS:
            raise ValueError(f"targets must be one of {TARGETS} and decoder one of {DECODERS}")
        self.check_positive("scenes", "valid_scenes", "rois", "width", "roi")
        DenseLayout(self.image_size)  # validates the size

    def build(self) -> Task:
        layout = DenseLayout(self.image_size)
        train, valid = (
            DenseRows(self.world, self.scenes, layout),
            DenseRows(self.valid_world, self.valid_scenes, layout),
        )
        with seeded(self.seed):
            model = RoIMaskNet(self.decoder, self.width, self.roi)
        objective = MayorObjective(model, layout, self.targets, self.rois)
        fingerprint = f"dense-{self.image_size}px-w{self.world}x{self.scenes}-v{self.valid_world}"
        return self.task(objective, train, valid, fingerprint)


@register("mayor-dense", "MAYOR: instance-aware mask targets on dense overlapping digits; instance IoU, mask AP")
def mayor_dense():
    return MayorRecipe()
