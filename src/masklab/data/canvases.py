"""Canvases: a small world of images with exact instance labels and referring expressions, made at run time.

Each canvas is a pure function of (seed, index): a crop of a scikit-image sample texture (``skimage.data``: brick,
grass, gravel, camera, ...), on which 2 to 5 objects are painted in flat colours: scikit-learn digits (the bundled
8x8 images, upscaled and thresholded) and ``skimage.draw.random_shapes`` shapes (circle, rectangle, triangle,
ellipse). Objects never touch (their boxes keep a gap), so every mask is exact and whole, and spatial words
have one meaning. Nothing is stored or downloaded; the random numbers come from a generator seeded with the
example's key (``masklab.corrupt.keyed.eval_keys(seed, [index])``), so no global RNG state is read or changed.

Each canvas carries instance masks, tight boxes (COCO [x, y, w, h]), class names, and referring expressions
generated from the scene, each naming exactly one object (checked by :func:`refers_to` when it is made):

* ``the 7`` / ``the circle``: the only object of its class;
* ``the largest triangle``, ``the smallest object``: strictly the largest or smallest mask area;
* ``the leftmost 3``, ``the topmost object`` (also rightmost, bottommost): strictly the first or last by the
  mask's extreme column or row;
* ``the 7 left of the 3`` (also right of, above, below): the only object of its class entirely on that side
  of the one object that ``the 3`` names (left of: its last column is before the other's first column).

:func:`to_coco` turns canvases into a COCO ground-truth dict (RLE masks, areas, boxes, categories, and RefCOCO-like
``refs``) for ``masklab.seg.cocoeval`` and pycocotools.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from masklab.corrupt import keyed

__all__ = ["Canvas", "canvas", "canvases", "to_coco", "refers_to", "CATEGORIES", "TEXTURES"]

SHAPES = ("circle", "rectangle", "triangle", "ellipse")
CATEGORIES = tuple(str(d) for d in range(10)) + SHAPES  # COCO category id = position + 1
TEXTURES = ("brick", "grass", "gravel", "camera", "moon", "coins", "coffee", "rocket", "astronaut", "chelsea")
_SIDES = {"left of": (1, 0), "right of": (0, 1), "above": (3, 2), "below": (2, 3)}  # (mine, other) extent index
_EXTREMES = {"leftmost": (0, min), "rightmost": (1, max), "topmost": (2, min), "bottommost": (3, max)}
_GAP = 2  # pixels between the boxes of two objects


@dataclass(frozen=True)
class Canvas:
    """One generated image and its exact labels."""

    seed: int
    index: int
    image: np.ndarray  # float32 [H, W, 3] in [0, 1]
    masks: np.ndarray  # bool [N, H, W], non-empty and pairwise disjoint
    boxes: np.ndarray  # int64 [N, 4]: the tight box (x, y, w, h) of each mask
    labels: tuple[str, ...]  # class name of each object (one of CATEGORIES)
    expressions: tuple[tuple[str, int], ...]  # (referring expression, the one object it names)

    @property
    def category_ids(self) -> np.ndarray:
        """COCO category id of each object (its position in CATEGORIES + 1)."""
        return np.array([CATEGORIES.index(lab) + 1 for lab in self.labels], dtype=np.int64)


def canvas(seed: int, index: int, size: int = 96) -> Canvas:
    """The canvas (seed, index): a size x size image (size >= 64) with its objects, masks and expressions."""
    for name, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 64:
        raise ValueError(f"size must be an int of at least 64, got {size!r}")
    rng = np.random.default_rng(int(keyed.eval_keys(int(seed), [int(index)])[0]))
    image = _texture(rng, size)
    masks, labels = _place_objects(rng, size)
    for m in masks:  # flat colours, away from the texture's mid-grey
        image[m] = rng.uniform(0.0, 1.0, 3) * 0.5 + np.where(rng.random(3) < 0.5, 0.0, 0.5)
    masks = np.stack(masks) if masks else np.zeros((0, size, size), bool)
    boxes = np.stack([_tight_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), np.int64)
    expressions = _expressions(masks, tuple(labels))
    return Canvas(int(seed), int(index), image, masks, boxes, tuple(labels), expressions)


def canvases(seed: int, n: int, size: int = 96, start: int = 0) -> list[Canvas]:
    """Canvases (seed, start), ..., (seed, start + n - 1)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return [canvas(seed, start + i, size) for i in range(n)]


# --------------------------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=len(TEXTURES))
def _texture_image(name: str) -> np.ndarray:
    """A sample image as float32 RGB [h, w, 3] in [0, 1] (read once; skimage ships these files)."""
    from skimage import data

    img = getattr(data, name)().astype(np.float32) / 255.0
    img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    img.flags.writeable = False
    return img


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size crop of a sample texture, contrast halved around mid-grey so objects stand out."""
    img = _texture_image(TEXTURES[rng.integers(len(TEXTURES))])
    h, w = img.shape[:2]
    if h < size or w < size:  # mirror the texture out to the canvas size
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
        h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return 0.25 + 0.5 * img[y : y + size, x : x + size].copy()


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)  # (1797, 8, 8), (1797,)


def _digit_patch(rng: np.random.Generator, s: int) -> tuple[np.ndarray, str]:
    """A digit's mask: a random sample of a random class, upscaled to s x s (bilinear) and thresholded."""
    from skimage.transform import resize

    images, target = _digits()
    d = int(rng.integers(10))
    pick = np.flatnonzero(target == d)
    img = images[pick[rng.integers(len(pick))]]
    return resize(img, (s, s), order=1, mode="edge", anti_aliasing=False) > 0.45, str(d)


def _shape_patch(rng: np.random.Generator, s: int) -> tuple[np.ndarray, str]:
    """One random_shapes shape in an s x s patch (its pixels are the non-white ones)."""
    from skimage.draw import random_shapes

    kind = SHAPES[rng.integers(len(SHAPES))]
    img, _ = random_shapes(
        (s, s), max_shapes=1, min_shapes=1, shape=kind, min_size=max(6, s // 3), max_size=s,
        channel_axis=None, rng=int(rng.integers(2**31)),
    )  # fmt: skip
    return img < 255, kind


def _place_objects(rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], list[str]]:
    """2-5 objects at random places whose boxes stay _GAP pixels apart (an object that finds no place after 30
    tries is dropped)."""
    masks, labels, taken = [], [], []  # taken: boxes (y0, x0, y1, x1), end exclusive
    for _ in range(int(rng.integers(2, 6))):
        s = int(rng.integers(size // 6, size // 3 + 1))
        patch, label = (_digit_patch if rng.random() < 0.5 else _shape_patch)(rng, s)
        if not patch.any():
            continue
        ys, xs = np.nonzero(patch)
        patch = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        h, w = patch.shape
        for _ in range(30):
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            if all(y >= b[2] + _GAP or b[0] >= y + h + _GAP or x >= b[3] + _GAP or b[1] >= x + w + _GAP for b in taken):
                m = np.zeros((size, size), bool)
                m[y : y + h, x : x + w] = patch
                masks.append(m)
                labels.append(label)
                taken.append((y, x, y + h, x + w))
                break
    return masks, labels


def _tight_box(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], dtype=np.int64)


# --------------------------------------------------------------------------------------------- expressions
def _extents(masks: np.ndarray) -> np.ndarray:
    """(first column, last column, first row, last row) of each mask, int64 [N, 4]."""
    out = np.zeros((len(masks), 4), dtype=np.int64)
    for n, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        out[n] = xs.min(), xs.max(), ys.min(), ys.max()
    return out


_PATTERNS = (
    (re.compile(r"^the (?P<cls>\S+)$"), "class"),
    (re.compile(r"^the (?P<which>largest|smallest) (?P<cls>\S+)$"), "size"),
    (re.compile(r"^the (?P<which>leftmost|rightmost|topmost|bottommost) (?P<cls>\S+)$"), "extreme"),
    (re.compile(r"^the (?P<cls>\S+) (?P<side>left of|right of|above|below) the (?P<other>\S+)$"), "relation"),
)


def refers_to(expression: str, masks: np.ndarray, labels: Sequence[str]) -> list[int]:
    """Every object (index) that ``expression`` describes in a scene of ``masks`` [N, H, W] and ``labels``; a
    well-formed expression names exactly one. ``object`` stands for any class."""
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a str, got {type(expression).__name__}")
    for pattern, kind in _PATTERNS:
        m = pattern.match(expression)
        if m:
            return _resolve(kind, m, masks, list(labels))
    raise ValueError(f"expression {expression!r} is not one of the canvas grammar's forms")


def _of_class(cls: str, labels: list[str]) -> list[int]:
    return [n for n, lab in enumerate(labels) if cls in ("object", lab)]


def _resolve(kind: str, m: re.Match, masks: np.ndarray, labels: list[str]) -> list[int]:
    pool = _of_class(m["cls"], labels)
    if kind == "class" or not pool:
        return pool
    if kind == "size":
        area = masks.reshape(len(masks), -1).sum(1)
        best = (max if m["which"] == "largest" else min)(area[pool])
        return [n for n in pool if area[n] == best]
    ext = _extents(masks)
    if kind == "extreme":
        axis, pick = _EXTREMES[m["which"]]
        best = pick(ext[pool, axis])
        return [n for n in pool if ext[n, axis] == best]
    anchors = _resolve("class", _PATTERNS[0][0].match(f"the {m['other']}"), masks, labels)
    if len(anchors) != 1:
        return []  # "the 3" must name one object for "left of the 3" to mean anything
    a = anchors[0]
    mine, other = _SIDES[m["side"]]
    before = m["side"] in ("left of", "above")  # my last column/row before its first, or the reverse
    return [
        n for n in pool if n != a and ((ext[n, mine] < ext[a, other]) if before else (ext[n, mine] > ext[a, other]))
    ]


def _expressions(masks: np.ndarray, labels: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """For every object, up to 3 expressions that name only it: its class if it is the only one (else the
    superlatives within its class), then its place relative to another class, then superlatives over all
    objects."""
    out = []
    for n, lab in enumerate(labels):
        if labels.count(lab) == 1:
            candidates = [f"the {lab}"]
        else:
            candidates = [f"the {w} {lab}" for w in ("largest", "smallest", *_EXTREMES)]
        candidates += [f"the {lab} {side} the {other}" for other in sorted(set(labels) - {lab}) for side in _SIDES]
        candidates += [f"the {w} object" for w in ("largest", "smallest", *_EXTREMES)]
        named = [text for text in candidates if refers_to(text, masks, labels) == [n]]
        out += [(text, n) for text in named[:3]]
    return tuple(out)


# --------------------------------------------------------------------------------------------- COCO
def to_coco(items: Sequence[Canvas]) -> dict:
    """COCO ground truth of canvases: image ids 1..len(items), one annotation per object (compressed RLE,
    area = mask pixels, bbox = tight box, iscrowd 0), the 14 categories, and RefCOCO-like ``refs`` (image_id,
    ann_id, category_id, sentence) for the referring expressions."""
    from masklab.seg.rle import rle_encode

    images, anns, refs = [], [], []
    for i, c in enumerate(items):
        if not isinstance(c, Canvas):
            raise ValueError(f"items[{i}] must be a Canvas, got {type(c).__name__}")
        H, W = c.image.shape[:2]
        images.append({"id": i + 1, "height": H, "width": W, "file_name": f"canvas-{c.seed}-{c.index}.png"})
        first = len(anns) + 1
        rles = rle_encode(c.masks) if len(c.masks) else []
        for n, (r, cat) in enumerate(zip(rles, c.category_ids, strict=True)):
            anns.append(
                {"id": first + n, "image_id": i + 1, "category_id": int(cat), "segmentation": r,
                 "area": float(c.masks[n].sum()), "bbox": [float(v) for v in c.boxes[n]], "iscrowd": 0}
            )  # fmt: skip
        refs += [
            {"image_id": i + 1, "ann_id": first + n, "category_id": int(c.category_ids[n]), "sentence": text}
            for text, n in c.expressions
        ]
    categories = [{"id": k + 1, "name": name, "supercategory": "digit" if name.isdigit() else "shape"}
                  for k, name in enumerate(CATEGORIES)]  # fmt: skip
    return {"images": images, "annotations": anns, "categories": categories, "refs": refs}
