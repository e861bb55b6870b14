"""Draw image patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM, referring) over a sample image.

    masklab show patches colormae-green --out green.png

Each panel is one keyed draw (seed, epoch 0, example i) on the same image; masked patches are greyed out.
``hpm`` uses the patch's pixel variance as a stand-in for a trained loss predictor; ``referring`` uses a box
around the image centre (drawn in red).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from masklab.corrupt import keyed
from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH
from masklab.viz._registry import PICTURE


def _image(size: int) -> np.ndarray:
    from skimage import data, transform

    img = data.astronaut().astype(np.float32) / 255.0
    return transform.resize(img, (size, size), anti_aliasing=True)


def masks_for(
    strategy: str, grid: int, n: int, seed: int, ratio: float | None, image: np.ndarray, progress: float = 1.0
):
    """(PatchMask, box or None) for ``n`` panels of ``strategy`` on ``image`` [S, S, 3]."""
    kw = {} if ratio is None else {"ratio": ratio}
    g = (grid, grid)
    box = None
    if strategy == "hpm":
        x = torch.tensor(image).permute(2, 0, 1)[None]  # (1, 3, S, S)
        p = image.shape[0] // grid
        patches = x.unfold(2, p, p).unfold(3, p, p)  # (1, 3, g, g, p, p)
        var = patches.reshape(1, 3, grid, grid, -1).var(-1).mean(1).reshape(1, -1).expand(n, -1)
        return P.hpm_patches(var, g, progress=progress, seed=seed, **kw), None
    if strategy == "referring":
        q = grid / 4
        box = [q, q, 3 * q, 3 * q]
        return P.referring_patches(g, boxes=[box] * n, seed=seed, **kw), box
    if strategy == "simmim":
        cell = 2 if grid % 2 == 0 else 1
        return P.simmim_patches(g, batch=n, cell=cell, seed=seed, **kw), None
    return PATCH.get(strategy)(g, keyed.train_keys(seed, 0, torch.arange(n)), **kw), None


@PICTURE.register("patches", "image patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM, referring) over a sample image")
def patches_figure(
    out,
    strategy: str = "random",
    grid: int = 14,
    ratio: float | None = None,
    panels: int = 4,
    seed: int = 0,
    progress: float = 1.0,
) -> Path:
    """``panels`` keyed draws of ``strategy`` on a ``grid`` x ``grid`` patch grid of 16-pixel patches;
    ``progress``: HPM's training progress in [0, 1]."""
    from masklab.viz._png import plt, save

    if grid < 1 or panels < 1:
        raise ValueError(f"grid and panels must be positive, got {grid}, {panels}")
    image = _image(grid * 16)
    pm, box = masks_for(strategy, grid, panels, seed, ratio, image, progress)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 2.9), squeeze=False)
    for i, ax in enumerate(axes[0]):
        m = pm.image()[i].numpy().repeat(16, 0).repeat(16, 1)[..., None]
        shown = np.where(m, 0.5 + 0.15 * image.mean(-1, keepdims=True), image)
        ax.imshow(shown)
        if box is not None:
            x0, y0, x1, y1 = (v * 16 for v in box)
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red", lw=1.5))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"example {i}: {int(pm.mask[i].sum())}/{pm.mask.shape[1]} masked", fontsize=8)
    fig.suptitle(f"{strategy} patch masks ({grid}x{grid} grid)", fontsize=10)
    return save(fig, out)
