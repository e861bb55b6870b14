"""MaskAlign on scikit-learn's digits: the student sees 30% of the patches and aligns its features to a frozen
teacher's at those positions (Xue et al. 2023, "Stare at What You See"; :mod:`masklab.objectives.maskalign`).
Launch: ``masklab train --recipe maskalign-digits --out runs/ma teacher=runs/mae-long/model``.

``teacher`` is a trained ``mae-digits`` checkpoint (the paper's teacher is CLIP; any frozen encoder of the same
image and patch size works), or ``random``: a frozen randomly initialised encoder, a baseline that needs no
pretrained teacher. The student has ``mae-digits``' encoder shape, so the image probes compare the two directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.data.digits import N_TRAIN, digits_images
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig
from masklab.objectives.maskalign import MaskAlign, MaskAlignObjective
from masklab.train.recipes.base import Recipe, Task, register, seeded


@dataclass
class MaskAlignDigitsRecipe(Recipe):
    modality: ClassVar[str] = "image"

    fixed_data: ClassVar[str] = "sklearn-digits"  # the one data this recipe reads
    data: str = "sklearn-digits"  # the only data this recipe reads
    teacher: str = "random"  # a mae-digits checkpoint (run folder or model/), or random (a frozen random encoder)
    mask_ratio: float = 0.7  # MaskAlign's default: the student sees 30% of the patches
    image_size: int = 16
    patch_size: int = 2
    dim: int = 64  # student width, as mae-digits' encoder
    depth: int = 2
    levels: int = 2  # Dynamic Alignment: the student's last `levels` layers against the teacher's last `levels`
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 40
    weight_decay: float = 0.05
    beta2: float = 0.95
    eval_every: int = 100
    ckpt_every: int = 200

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 1 <= self.levels <= self.depth:
            raise ValueError(f"levels must be in [1, depth={self.depth}], got {self.levels}")

    def _teacher(self, cfg: MaskedViTConfig):
        if self.teacher == "random":
            with seeded(self.seed + 1):
                return MaskedViT(cfg).encoder
        from masklab.train import checkpoint

        vit = checkpoint.load(self.teacher).model
        if not isinstance(vit, MaskedViT):
            raise ValueError(f"teacher {self.teacher} is not a masked ViT (a mae-digits checkpoint)")
        if (vit.config.image_size, vit.config.patch_size) != (self.image_size, self.patch_size):
            c = vit.config
            raise ValueError(f"teacher {self.teacher} reads {c.image_size}px images in {c.patch_size}px patches; "
                             f"this run {self.image_size} and {self.patch_size}")  # fmt: skip
        if vit.config.num_hidden_layers < self.levels:
            raise ValueError(f"teacher {self.teacher} has fewer than levels={self.levels} layers")
        return vit.encoder

    def build(self) -> Task:
        x, _ = digits_images(self.image_size)
        cfg = MaskedViTConfig(image_size=self.image_size, patch_size=self.patch_size, hidden_size=self.dim,
                              num_hidden_layers=self.depth, mask_ratio=self.mask_ratio)  # fmt: skip
        with seeded(self.seed):
            vit = MaskedViT(cfg)
            teacher = self._teacher(cfg)
            model = MaskAlign(vit.encoder, teacher, student_dim=self.dim, teacher_dim=teacher.config.hidden_size,
                              student_levels=self.levels, teacher_levels=self.levels)  # fmt: skip
        objective = MaskAlignObjective(model, self.patch_size, cfg.grid, self.mask_ratio, vit=vit)
        info = {"teacher": self.teacher, "grid": list(cfg.grid)}
        return Task(objective, x[:N_TRAIN], x[N_TRAIN:], f"sklearn-digits-{self.image_size}px-split1347", info=info)


@register("maskalign-digits", "MaskAlign on sklearn digits: visible-patch features aligned to a frozen teacher")
def maskalign_digits():
    return MaskAlignDigitsRecipe()
