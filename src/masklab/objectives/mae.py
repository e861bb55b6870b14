"""MAE: masked autoencoding of image patches (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners"), and HPM (Wang et al. 2023) on top of it.

The model is :class:`masklab.models.vit_mae.MaskedViT` (encoder on the visible patches, light decoder with a shared
mask token, MSE on masked patches of per-patch normalized pixels, HPM's loss-prediction head and Eq. 6 ranking loss).
This module turns it into a training objective: :func:`mask_for` gives the mask of any patch strategy
(:data:`masklab.corrupt.strategies.PATCH`) for a batch (HPM asks the model for its predicted losses, referring masks
the digit's ink box from :func:`ink_boxes`), and :class:`MAEObjective` trains the model through the one loop
(:func:`masklab.train.loop.train`, recipe ``mae-digits``). The linear probe that evaluates the learnt features is
:func:`masklab.train.probe.linear_probe`.
"""

from __future__ import annotations

import torch

from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH
from masklab.models.vit_mae import MaskedViT
from masklab.objectives.base import Objective

__all__ = ["MAEObjective", "ink_boxes", "mask_for"]


def ink_boxes(images: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """[B, 4] (x0, y0, x1, y1) pixel box around the pixels above ``threshold`` (the digit): the referred
    region."""
    ink = images.amax(1) > threshold  # (B, H, W)
    B, H, W = ink.shape
    rows, cols = ink.any(2), ink.any(1)
    r = torch.arange(H, device=images.device)
    c = torch.arange(W, device=images.device)
    y0 = torch.where(rows, r, H).amin(1)
    y1 = torch.where(rows, r + 1, 0).amax(1)
    x0 = torch.where(cols, c, W).amin(1)
    x1 = torch.where(cols, c + 1, 0).amax(1)
    empty = y1 <= y0
    box = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(empty[:, None], torch.tensor([0.0, 0.0, W, H], device=images.device), box)


def mask_for(
    strategy: str, model: MaskedViT, images: torch.Tensor, keys: torch.Tensor, ratio: float, progress: float
) -> P.PatchMask:
    """The patch mask of ``strategy`` for a batch; HPM asks the model, referring masks the digit's ink box."""
    grid = model.config.grid
    if strategy == "hpm":
        return P.hpm_patches(model.predict_loss(images), grid, ratio, progress=progress, keys=keys)
    if strategy == "referring":
        return P.referring_patches(
            grid,
            boxes=ink_boxes(images),
            image_size=images.shape[-2:],
            ratio=ratio,
            inside_ratio=min(1.0, ratio + 0.15),
            keys=keys,
        )
    if strategy == "block":
        N = grid[0] * grid[1]
        return P.block_patches(grid, ratio, keys=keys, min_block=max(1, N // 16), max_block=N // 3)
    if strategy == "simmim":
        return P.simmim_patches(grid, ratio, keys=keys, cell=2)
    return PATCH.get(strategy)(grid, keys, ratio=ratio)


class MAEObjective(Objective):
    """The training-loop interface around :class:`~masklab.models.vit_mae.MaskedViT`: ``forward(images, keys) ->
    (loss, metrics)``. ``ratio`` defaults to the model's ``config.mask_ratio``; HPM's easy-to-hard progress counts
    training calls."""

    name = "mae"
    eval_batch_size = 64

    def __init__(self, model: MaskedViT, strategy: str = "random", ratio: float | None = None, total_steps: int = 1):
        super().__init__(model)
        PATCH[strategy]  # an unknown name is one ValueError naming the choices
        self.strategy, self.total_steps = strategy, max(total_steps, 1)
        self.ratio = model.config.mask_ratio if ratio is None else ratio
        self.calls = 0

    def flop_groups(self):
        """(parameters, share of the patches they process) for :mod:`masklab.compare.flops`: MAE's encoder sees
        only the visible ``1 - ratio`` of the patches, the decoder all of them (He et al. 2022, Sec. 3)."""
        from masklab.compare.flops import matmul_params

        encoder = {id(p) for p in self.model.encoder.parameters()}
        rest = [p for p in matmul_params(self) if id(p) not in encoder]
        return [(list(self.model.encoder.parameters()), 1.0 - self.ratio), (rest, 1.0)]

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        if self.training:
            self.calls += 1
        progress = min(1.0, self.calls / self.total_steps)
        pm = mask_for(self.strategy, self.model, batch, keys, self.ratio, progress)
        out = self.model(batch, pm)
        return out.loss, {"recon": out.recon}
