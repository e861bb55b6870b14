"""MAE on scikit-learn's bundled digits with any patch strategy. Launch:
``masklab train --recipe mae-digits strategy=colormae-green --out runs/mae-green``.

Linear-probe accuracy per strategy is measured by ``benchmarks/mae_digits.py`` (see docs/patches.md). With
``strategy=hpm`` the masks come from an EMA teacher whose decay rises from ``ema_decay`` to ``ema_decay_end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.corrupt.strategies import PATCH
from masklab.data.digits import N_TRAIN, digits_images
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig
from masklab.objectives.mae import MAEObjective
from masklab.train.recipes.base import Recipe, Task, register, seeded


@dataclass
class MAEDigitsRecipe(Recipe):
    modality: ClassVar[str] = "image"

    fixed_data: ClassVar[str] = "sklearn-digits"  # the one data this recipe reads
    data: str = "sklearn-digits"  # the only data this recipe reads: 1797 bundled 8x8 digits, no download
    strategy: str = "random"  # a patch strategy name (masklab list patch)
    mask_ratio: float = 0.75  # MAE's default
    image_size: int = 16  # digits upsampled 8 -> 16 so a 2x2 patch has distinct pixels to normalize
    patch_size: int = 2  # 8x8 grid of patches
    dim: int = 64  # encoder width
    depth: int = 2  # encoder blocks
    decoder_dim: int = 32  # MAE's decoder is narrower than the encoder
    steps: int = 400  # ~1 min per strategy on a free CPU core
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 40
    weight_decay: float = 0.05  # MAE's value
    beta2: float = 0.95  # MAE's value
    eval_every: int = 100
    ckpt_every: int = 200
    ema_decay: float = 0.999  # HPM: the EMA teacher's decay at the start (reference engine_pretrain.py)
    ema_decay_end: float = 0.9999  # HPM: its decay at the end, reached linearly over training

    def __post_init__(self):
        super().__post_init__()
        if self.strategy not in PATCH:
            raise ValueError(f"strategy must be one of {', '.join(PATCH)}, got {self.strategy!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not 0.0 <= self.ema_decay <= self.ema_decay_end <= 1.0:
            raise ValueError(f"need 0 <= ema_decay <= ema_decay_end <= 1, got {self.ema_decay}, {self.ema_decay_end}")

    def build(self) -> Task:
        x, _ = digits_images(self.image_size)
        cfg = MaskedViTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.dim,
            num_hidden_layers=self.depth,
            decoder_hidden_size=self.decoder_dim,
            mask_ratio=self.mask_ratio,
            loss_head=self.strategy == "hpm",
        )
        with seeded(self.seed):
            model = MaskedViT(cfg)
        decay = (self.ema_decay, self.ema_decay_end)
        objective = MAEObjective(model, self.strategy, total_steps=self.steps, ema_decay=decay)
        return Task(
            objective,
            x[:N_TRAIN],
            x[N_TRAIN:],
            f"sklearn-digits-{self.image_size}px-split1347",
            info={"strategy": self.strategy, "grid": list(cfg.grid)},
        )


@register("mae-digits", "MAE on sklearn digits (8x8 -> 16x16, 8x8 patches); strategy=random|block|colormae-*|...")
def mae_digits():
    return MAEDigitsRecipe()
