"""Draw image patch masks (MAE, BEiT, SimMIM, ColorMAE, HPM, referring) over a sample image.

    masklab show patches colormae-green --out green.png

Each panel is one keyed draw (seed, epoch 0, example i) on the same image; masked patches are greyed out.
``hpm`` uses the patch's pixel variance as a stand-in for a trained loss predictor; ``referring`` uses a box
around the image centre (drawn in red).
"""

from __future__ import annotations

import numpy as np
import torch

from masklab.corrupt import patches as P


def add_arguments(parser) -> None:
    parser.add_argument("strategy", choices=sorted(P.STRATEGIES), help="patch mask strategy")
    parser.add_argument("--out", required=True, help="output .png file")
    parser.add_argument("--grid", type=int, default=14, help="patches per side (default 14, as ViT-B/16 at 224)")
    parser.add_argument("--ratio", type=float, default=None, help="mask ratio (default: the strategy's)")
    parser.add_argument("--panels", type=int, default=4, help="number of draws to show")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", type=float, default=1.0, help="hpm: training progress in [0, 1]")


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
    return P.STRATEGIES[strategy](g, batch=n, seed=seed, **kw), None


def run(args) -> None:
    import matplotlib.pyplot as plt

    from masklab.viz._png import save

    if args.grid < 1 or args.panels < 1:
        raise ValueError(f"grid and panels must be positive, got {args.grid}, {args.panels}")
    size = args.grid * 16
    image = _image(size)
    pm, box = masks_for(args.strategy, args.grid, args.panels, args.seed, args.ratio, image, args.progress)
    fig, axes = plt.subplots(1, args.panels, figsize=(2.6 * args.panels, 2.9), squeeze=False)
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
    fig.suptitle(f"{args.strategy} patch masks ({args.grid}x{args.grid} grid)", fontsize=10)
    out = save(fig, args.out)
    print(out)
