"""Overlay a segmentation mask, an RLE or Text4Seg descriptors on an image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masklab.viz._png import plt, save
from masklab.viz._registry import PICTURE


def _image(path: str | None) -> np.ndarray:
    if path is None:
        from skimage import data

        return data.camera()
    if not Path(path).exists():
        raise FileNotFoundError(f"image not found: {path}")
    return plt.imread(path)


def _mask(image, mask, descriptors, label, background, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    from masklab.seg.descriptors import decode_descriptors, grid_to_mask
    from masklab.seg.rle import rle_decode

    if mask and descriptors:
        raise ValueError("give --mask or --descriptors, not both")
    if descriptors:
        text = Path(descriptors).read_text()
        d = decode_descriptors(text, strict=False, background=background)
        if d.grid.size == 0:
            raise ValueError(f"no descriptor cells in {descriptors}")
        note = f"descriptors {d.grid.shape[0]}x{d.grid.shape[1]}, {len(d.repairs)} repairs"
        return grid_to_mask(d.grid, size, label=label, background=background), note
    if mask:
        p = Path(mask)
        if not p.exists():
            raise FileNotFoundError(f"mask not found: {p}")
        expected = "a COCO RLE .json ({'size': [h, w], 'counts': ...}) or a .npy array [h, w] saved by numpy.save"
        try:
            m = rle_decode(json.loads(p.read_text())) if p.suffix == ".json" else np.load(p, allow_pickle=False) != 0
        except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as e:
            raise ValueError(f"mask {p} is not {expected}: {str(e).splitlines()[0]}") from None
        if m.ndim != 2:
            raise ValueError(f"mask {p} is not {expected}: it has {m.ndim} dimensions")
        if m.shape != size:
            raise ValueError(f"mask is {m.shape[0]}x{m.shape[1]} but the image is {size[0]}x{size[1]}")
        return m, p.name
    from skimage.filters import threshold_otsu

    gray = _image(image)
    gray = gray.mean(-1) if gray.ndim == 3 else gray
    return gray < threshold_otsu(gray), "Otsu threshold (dark pixels)"


@PICTURE.register("seg", "a segmentation mask, COCO RLE or Text4Seg descriptors over an image, with its 16x16 grid")
def seg_figure(
    out,
    image: str | None = None,
    mask: str | None = None,
    descriptors: str | None = None,
    label: str | None = None,
    background: str = "others",
) -> Path:
    """Overlay on ``image`` (default: scikit-image's camera) the mask of a ``mask`` file (COCO RLE .json or
    .npy), of a ``descriptors`` text file (read leniently; ``label`` picks one label), or of an Otsu threshold."""
    from masklab.seg.descriptors import encode_descriptors, mask_to_grid
    from masklab.seg.rle import rle_encode

    img = _image(image)
    size = img.shape[:2]
    mask, note = _mask(image, mask, descriptors, label, background, size)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(img, cmap="gray")
    overlay = np.zeros((*size, 4))
    overlay[mask] = (1.0, 0.2, 0.2, 0.5)
    axes[0].imshow(overlay)
    rle = rle_encode(mask)
    axes[0].set_title(f"{note}: {int(mask.sum())} px, RLE {len(rle['counts'])} chars", fontsize=9)
    grid = 16 if size[0] % 16 == 0 and size[1] % 16 == 0 else None
    if grid:
        g = mask_to_grid(mask, grid, label="object")
        axes[1].imshow(g == "object", cmap="Reds", vmin=0, vmax=1.5)
        text = encode_descriptors(g)
        axes[1].set_title(
            f"16x16 descriptors: R-RLE {len(text)} chars vs plain {len(encode_descriptors(g, rle=False))}", fontsize=9
        )
    else:
        axes[1].imshow(mask, cmap="Reds", vmin=0, vmax=1.5)
        axes[1].set_title("mask (image size not a multiple of 16: no descriptor grid)", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return save(fig, out)
