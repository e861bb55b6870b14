"""scikit-learn's bundled digits (1797 images, 8x8, no download) as image tensors for the MAE recipes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed

__all__ = ["digits_images", "N_TRAIN"]

N_TRAIN = 1347  # the first 1347 images (in the keyed order) are the training split, the last 450 the test split


def digits_images(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """([1797, 1, size, size] float in [0, 1], labels [1797]) in a fixed keyed order (seed 0): the first
    :data:`N_TRAIN` are the training split, the rest the test split. Bilinear upsampling gives a 2x2 patch
    several distinct pixels for the per-patch normalized target."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # one fixed shuffle of the dataset (a data split, not a mask: it is outside keyed.Stream on purpose)
    order = keyed.uniform(keyed.example_keys(0, 0, [0]), len(x), stream=1)[0].argsort()
    return x[order], torch.as_tensor(d.target)[order]
