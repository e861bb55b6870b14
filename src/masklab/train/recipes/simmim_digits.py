"""SimMIM on scikit-learn's digits, with or without MTO's weight recalibration (:mod:`masklab.objectives.mto`).
Launch: ``masklab train --recipe simmim-digits --out runs/simmim mto=true``.

The encoder has ``mae-digits``' shape and the checkpoint is a masked-ViT folder, so the image probes
(``digits-linear``, ``digits-knn``, ``digits-seg``) compare it with MAE directly; ``benchmarks/mto_digits.py``
measures the steps each needs to reach a fixed linear-probe accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.data.digits import N_TRAIN, digits_images
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig
from masklab.objectives.mto import SimMIM, SimMIMObjective
from masklab.train.recipes.base import Recipe, Task, register, seeded


@dataclass
class SimMIMDigitsRecipe(Recipe):
    modality: ClassVar[str] = "image"

    fixed_data: ClassVar[str] = "sklearn-digits"  # the one data this recipe reads
    data: str = "sklearn-digits"  # the only data this recipe reads: 1797 bundled 8x8 digits, no download
    mto: bool = False  # MTO: visible tokens' attention excludes the masked tokens, in every encoder layer
    mask_ratio: float = 0.6  # SimMIM's default
    cell: int = 2  # mask cells of 2x2 patches (4px of 16px; SimMIM masks 32px cells of 192px images)
    image_size: int = 16  # digits upsampled 8 -> 16, as mae-digits
    patch_size: int = 2  # 8x8 grid of patches
    dim: int = 64  # encoder width, as mae-digits
    depth: int = 2  # encoder blocks
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 40
    weight_decay: float = 0.05  # SimMIM's value
    beta2: float = 0.999  # SimMIM's AdamW betas (0.9, 0.999)
    eval_every: int = 100
    ckpt_every: int = 200

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        side = self.image_size // self.patch_size
        if self.cell < 1 or side % self.cell:
            raise ValueError(f"cell must divide the {side}x{side} patch grid, got {self.cell}")

    def build(self) -> Task:
        x, _ = digits_images(self.image_size)
        cfg = MaskedViTConfig(image_size=self.image_size, patch_size=self.patch_size, hidden_size=self.dim,
                              num_hidden_layers=self.depth, mask_ratio=self.mask_ratio)  # fmt: skip
        with seeded(self.seed):
            vit = MaskedViT(cfg)
            model = SimMIM(vit.encoder, mto=self.mto)
        objective = SimMIMObjective(model, vit, self.mask_ratio, self.cell)
        info = {"mto": self.mto, "grid": list(cfg.grid)}
        return Task(objective, x[:N_TRAIN], x[N_TRAIN:], f"sklearn-digits-{self.image_size}px-split1347", info=info)


@register("simmim-digits", "SimMIM on sklearn digits (mask tokens in the encoder, L1 on pixels); mto=true adds MTO")
def simmim_digits():
    return SimMIMDigitsRecipe()
