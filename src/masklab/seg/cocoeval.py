"""COCO instance evaluation: AP and AR of masks or boxes, equal to pycocotools' ``COCOeval`` (within 1e-9).

Reference: cocoapi ``PythonAPI/pycocotools/cocoeval.py`` (``evaluate``, ``evaluateImg``, ``accumulate``,
``summarize``), ``coco.py`` (``loadRes``, ``annToRLE``) and ``common/maskApi.c`` (``rleIou``, ``bbIou``); the
metric is that of Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014. Its rules, all kept:

* Images are the gt's images, categories its categories, both in sorted id order. Within one (image, category)
  the detections are ordered by score, highest first, ties kept in input order (a stable sort), and only the
  first 100 count.
* IoU: mask IoU from the runs (``rleIou``) or box IoU (``bbIou``); against a crowd region the union is the
  detection's own area. A gt is *ignored* if it is a crowd or its ``area`` (the annotation's field) is outside
  the area range: all [0, 1e10], small [0, 32^2], medium [32^2, 96^2], large [96^2, 1e10], ends included.
* Greedy matching, detection by detection, at each IoU threshold t in 0.50:0.05:0.95: among the gts it may still
  take (not yet matched, or a crowd) with IoU >= min(t, 1 - 1e-10), a detection takes the best regular gt (the
  last of equal best, as ``evaluateImg``'s scan keeps the last); only if there is none, the best ignored gt. A
  detection matched to an ignored gt is ignored; an unmatched detection whose area is outside the range is
  ignored.
* Accumulation per category, area range and maxDets (1, 10, 100): the first maxDets detections of each image,
  all images pooled and stably sorted by score; precision made monotone from the right, read at the 101 recall
  points 0:0.01:1 (0 past the last recall reached); recall is the last one reached. -1 marks a category with no
  regular gt in that area range.
* A detection's area is its box's w * h when the first detection has a bbox (``loadRes`` takes its branch from
  the first result), otherwise its mask's area.

Vectorised: all IoUs in one pass over the runs (no decoding), matching one detection rank at a time for all
(image, category, area range, threshold) cells at once, accumulation per category over whole arrays.

Deliberate differences from pycocotools, each a one-line ``ValueError`` where pycocotools fails later or gives a
silent result: missing keys, unknown image or category ids (pycocotools drops detections of unknown categories),
empty segmentations, polygons of fewer than 3 points (pycocotools reads a 4-value polygon as a box, cocoapi
issue #369), RLEs whose size is not their image's, images of size 0. A gt whose ``id`` is 0 counts as matched
(pycocotools stores matches by id and takes id 0 for "unmatched"). An empty detection list is evaluated
(pycocotools' ``loadRes`` fails on it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from masklab.seg.polygon import box_polygon, polygon_runs
from masklab.seg.rle import Runs

__all__ = [
    "evaluate",
    "CocoEval",
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "MAX_DETS",
    "AREA_RANGES",
    "AREA_LABELS",
    "STAT_NAMES",
]

# COCOeval's Params, computed the same way (np.arange would put points slightly off)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (ap?, IoU threshold or None for the mean, area label, maxDets) of each of COCOeval.stats' 12 numbers
_STATS = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


@dataclass(frozen=True)
class CocoEval:
    """The result of :func:`evaluate`: COCOeval's ``stats`` and ``eval`` arrays, with per-category summaries."""

    stats: np.ndarray  # (12,) in COCOeval.stats order, names in STAT_NAMES
    precision: np.ndarray  # (T, R, K, A, M) = (10, 101, categories, 4, 3); -1 where there is no regular gt
    recall: np.ndarray  # (T, K, A, M)
    scores: np.ndarray  # (T, R, K, A, M): the score at which each precision point is reached
    cat_ids: tuple  # the K category ids, sorted
    iou_type: str

    @property
    def summary(self) -> dict[str, float]:
        """The 12 stats by name: AP, AP50, AP75, APs/APm/APl (per area), AR1, AR10, AR100, ARs/ARm/ARl."""
        return dict(zip(STAT_NAMES, self.stats.tolist(), strict=True))

    def per_category(self) -> dict:
        """The 12 stats of each category alone (category id -> (12,)), as the summary of that category's slice of
        ``precision`` and ``recall`` (-1 where the category has no regular gt in the area range)."""
        return {
            c: _summarize(self.precision[:, :, k : k + 1], self.recall[:, k : k + 1])
            for k, c in enumerate(self.cat_ids)
        }


def evaluate(gt: Mapping, dt: Sequence[Mapping], iou_type: str = "segm") -> CocoEval:
    """COCO AP/AR of detections ``dt`` against ground truth ``gt``, as pycocotools' ``COCOeval`` with default
    parameters (evaluate, accumulate, summarize).

    ``gt``: a COCO dict with ``images`` (``id``; ``height`` and ``width`` for ``segm``), ``categories`` (``id``)
    and ``annotations`` (``id``, ``image_id``, ``category_id``, ``area``, ``iscrowd``, and ``segmentation``
    (polygons, RLE or uncompressed RLE) for ``segm`` or ``bbox`` [x, y, w, h] for ``bbox``). ``dt``: a list of
    detections with ``image_id``, ``category_id``, ``score`` and ``segmentation`` or ``bbox`` (a box-only
    detection in ``segm`` is its box as a polygon, as in ``loadRes``).
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    images, cats = _images(gt, iou_type), _categories(gt)
    g = _ground_truth(gt, images, cats, iou_type)
    d = _detections(dt, images, cats, iou_type)
    d = _top_per_cell(d, len(cats))
    pairs = _pairs(d, g, len(cats))
    ious = _ious(d, g, pairs, iou_type)
    matched, ignored = _match(d, g, pairs, ious, len(cats))
    precision, recall, scores = _accumulate(d, g, matched, ignored, len(cats))
    return CocoEval(_summarize(precision, recall), precision, recall, scores, tuple(cats), iou_type)


# --------------------------------------------------------------------------------------------- reading
@dataclass
class _Table:
    """Annotations or detections as arrays, in input order (or a subset of it)."""

    img: np.ndarray  # int64 [N]: index into the sorted image ids
    cat: np.ndarray  # int64 [N]: index into the sorted category ids
    area: np.ndarray  # float64 [N]: gt 'area' field; a detection's box or mask area
    crowd: np.ndarray  # bool [N] (all False for detections)
    score: np.ndarray  # float64 [N] (zeros for gt)
    boxes: np.ndarray | None  # float64 [N, 4] for bbox
    runs: Runs | None  # masks for segm
    rank: np.ndarray | None = None  # int64 [N]: a detection's place in its (image, category) by score

    def take(self, idx: np.ndarray) -> _Table:
        return _Table(
            self.img[idx],
            self.cat[idx],
            self.area[idx],
            self.crowd[idx],
            self.score[idx],
            None if self.boxes is None else self.boxes[idx],
            None if self.runs is None else self.runs.take(idx),
            None if self.rank is None else self.rank[idx],
        )


@dataclass(frozen=True)
class _Images:
    ids: list  # sorted image ids
    index: dict  # image id -> position in ids
    hw: np.ndarray  # int64 [I, 2] (zeros in bbox mode, where sizes are not needed)


def _require(mapping, key: str, what: str):
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{what} must be a dict, got {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"{what} has no {key!r}")
    return mapping[key]


def _column(rows: Sequence[Mapping], key: str, what: str) -> list:
    """``[row[key] for row in rows]``, or a ValueError naming the first row without it."""
    try:
        return [r[key] for r in rows]
    except (KeyError, TypeError):
        for n, r in enumerate(rows):
            _require(r, key, f"{what} {n}")
        raise


def _sorted_ids(ids: list, what: str) -> list:
    try:
        out = sorted(set(ids))
    except TypeError:
        kinds = sorted({type(i).__name__ for i in ids})
        raise ValueError(f"{what} ids must be hashable and of one sortable type, got {kinds}") from None
    if len(out) != len(ids):
        seen: set = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise ValueError(f"{what} id {dup!r} appears more than once")
    return out


def _images(gt, iou_type: str) -> _Images:
    images = _require(gt, "images", "gt")
    _require(gt, "annotations", "gt")
    _require(gt, "categories", "gt")
    ids = _sorted_ids(_column(images, "id", "gt image"), "image")
    index = {i: n for n, i in enumerate(ids)}
    hw = np.full((len(ids), 2), -1, dtype=np.int64)  # -1: not given (allowed for bbox, where no mask is drawn)
    for n, im in enumerate(images):
        if iou_type == "segm":  # polygons are drawn, and RLEs checked, at the image's size
            _require(im, "height", f"gt image {n}"), _require(im, "width", f"gt image {n}")
        if "height" in im or "width" in im:
            h, w = im.get("height"), im.get("width")
            if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in (h, w)):
                raise ValueError(f"gt image {im['id']!r} has size {h!r}x{w!r}; height and width must be positive ints")
            hw[index[im["id"]]] = h, w
    return _Images(ids, index, hw)


def _categories(gt) -> list:
    return _sorted_ids(_column(gt["categories"], "id", "gt category"), "category")


def _indices(values: list, index: dict, what: str, name: str, where: str) -> np.ndarray:
    try:
        return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
    except (KeyError, TypeError):
        n = next(n for n, v in enumerate(values) if not _hashable_in(v, index))
        raise ValueError(f"{what} {n} has {name} {values[n]!r}, which is not in {where}") from None


def _hashable_in(v, index: dict) -> bool:
    try:
        return v in index
    except TypeError:
        return False


def _ground_truth(gt, images: _Images, cats: list, iou_type: str) -> _Table:
    anns = gt["annotations"]
    if not isinstance(anns, Sequence):
        raise ValueError(f"gt['annotations'] must be a list, got {type(anns).__name__}")
    what = "gt annotation"
    _column(anns, "id", what)
    img = _indices(_column(anns, "image_id", what), images.index, what, "image_id", "gt['images']")
    cat = _indices(
        _column(anns, "category_id", what), {c: k for k, c in enumerate(cats)}, what, "category_id", "gt['categories']"
    )
    area = _numbers(_column(anns, "area", what), what, "area")
    crowd = np.array([bool(v) for v in _column(anns, "iscrowd", what)], dtype=bool)
    if iou_type == "bbox":
        boxes, runs = _boxes(_column(anns, "bbox", what), what), None
    else:
        boxes, runs = None, _masks(_column(anns, "segmentation", what), img, images, what)
    return _Table(img, cat, area, crowd, np.zeros(len(anns)), boxes, runs)


def _detections(dt, images: _Images, cats: list, iou_type: str) -> _Table:
    if isinstance(dt, Mapping) or not isinstance(dt, Sequence):
        raise ValueError(f"dt must be a list of detections, got {type(dt).__name__}")
    what = "detection"
    img = _indices(_column(dt, "image_id", what), images.index, what, "image_id", "gt['images']")
    cat = _indices(
        _column(dt, "category_id", what), {c: k for k, c in enumerate(cats)}, what, "category_id", "gt['categories']"
    )
    score = _numbers(_column(dt, "score", what), what, "score")
    # loadRes takes its branch from the first result: a bbox gives every area as w * h
    box_first = len(dt) > 0 and "bbox" in dt[0] and not (isinstance(dt[0]["bbox"], list) and dt[0]["bbox"] == [])
    boxes = _boxes(_column(dt, "bbox", what), what) if box_first else None
    runs = None
    if iou_type == "segm" or not box_first:
        if box_first:  # box-only results are drawn as their box polygon
            segs = [
                r["segmentation"] if "segmentation" in r else [box_polygon(b)] for r, b in zip(dt, boxes, strict=True)
            ]
        else:
            segs = _column(dt, "segmentation", what)
        runs = _masks(segs, img, images, what)
    area = boxes[:, 2] * boxes[:, 3] if box_first else runs.area().astype(np.float64)
    if iou_type == "bbox" and boxes is None:
        boxes = runs.bbox()  # loadRes: toBbox of the mask
    if iou_type == "bbox":
        runs = None
    return _Table(img, cat, area, np.zeros(len(dt), bool), score, boxes, runs)


def _numbers(values: list, what: str, name: str) -> np.ndarray:
    try:
        out = np.array(values, dtype=np.float64).reshape(len(values))
    except (TypeError, ValueError):
        out = None
    if out is None or not np.isfinite(out).all():
        n = next(n for n, v in enumerate(values) if not _finite(v))
        raise ValueError(f"{what} {n} has {name} {values[n]!r}; it must be a finite number")
    return out


def _finite(v) -> bool:
    try:
        return bool(np.isfinite(float(v))) and not isinstance(v, bool | str)
    except (TypeError, ValueError):
        return False


def _boxes(values: list, what: str) -> np.ndarray:
    try:
        out = np.array(values, dtype=np.float64).reshape(len(values), 4)
    except (TypeError, ValueError):
        out = None
    if out is None or not np.isfinite(out).all():
        for n, v in enumerate(values):
            try:
                ok = np.isfinite(np.array(v, dtype=np.float64).reshape(4)).all()
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{what} {n} has bbox {v!r}; it must be 4 finite numbers [x, y, w, h]")
    return out


def _masks(segs: list, img: np.ndarray, images: _Images, what: str) -> Runs:
    """Runs of every segmentation at its image's size: RLEs parsed together, polygons drawn together, the
    polygons of one annotation merged into one mask (``annToRLE``)."""
    is_rle = np.array([type(s) is dict or isinstance(s, Mapping) for s in segs], dtype=bool)
    polygons = np.array([type(s) is list and len(s) > 0 for s in segs], dtype=bool)
    if not (is_rle | polygons).all():
        for n, s in enumerate(segs):
            if not (is_rle[n] or isinstance(s, list | tuple)) or (not is_rle[n] and len(s) == 0):
                raise ValueError(f"{what} {n} has an empty or unreadable segmentation {str(s)[:40]}")
    rle_at, poly_at = np.flatnonzero(is_rle), np.flatnonzero(~is_rle)
    parts, order = [], []
    if len(rle_at):
        parts.append(_rle_runs([segs[n] for n in rle_at], rle_at, img, images, what))
        order.append(rle_at)
    if len(poly_at):
        parts.append(_polygon_masks([segs[n] for n in poly_at], poly_at, img, images, what))
        order.append(poly_at)
    if not parts:
        return Runs.concat([])
    return Runs.concat(parts).take(np.argsort(np.concatenate(order), kind="stable"))


def _polygon_masks(segs: list, at: np.ndarray, img: np.ndarray, images: _Images, what: str) -> Runs:
    """One mask per annotation from its polygons: drawn all at once, then the annotations with several
    polygons merged (annToRLE: ``merge(frPyObjects(polygons, h, w))``)."""
    per = np.fromiter((len(s) for s in segs), dtype=np.int64, count=len(segs))
    owner = np.repeat(np.arange(len(segs)), per)  # (polygons,) position in segs
    hw = images.hw[img[at[owner]]]
    if (hw < 0).any():
        n = int(at[owner[np.flatnonzero(hw[:, 0] < 0)[0]]])
        raise ValueError(f"{what} {n} is a polygon, but its image {images.ids[img[n]]!r} has no height and width")
    polys = list(itertools.chain.from_iterable(segs))
    first = np.cumsum(per) - per
    names = _PolygonNames(what, at, owner, first)
    drawn = polygon_runs(polys, hw[:, 0], hw[:, 1], names=names)
    several = np.flatnonzero(per > 1)
    if not len(several):
        return drawn
    one = np.flatnonzero(per == 1)
    merged = drawn.take(np.flatnonzero(per[owner] > 1)).union(np.searchsorted(several, owner[per[owner] > 1]))
    parts = Runs.concat([drawn.take(first[one]), merged])
    return parts.take(np.argsort(np.concatenate([one, several]), kind="stable"))


@dataclass(frozen=True)
class _PolygonNames:
    """Names polygon p of the flat list in error messages: '<what> <annotation> polygon <k>'."""

    what: str
    at: np.ndarray
    owner: np.ndarray
    first: np.ndarray

    def __getitem__(self, p: int) -> str:
        n = self.owner[p]
        return f"{self.what} {int(self.at[n])} polygon {int(p - self.first[n])}"


def _rle_runs(rles: list, at: np.ndarray, img: np.ndarray, images: _Images, what: str) -> Runs:
    try:
        runs = Runs.of(rles)
    except ValueError:
        for n, r in zip(at, rles, strict=True):  # find the culprit and name it
            try:
                Runs.of([r])
            except ValueError as e:
                raise ValueError(f"{what} {n}: segmentation {str(e).replace('RLE 0 ', '')}") from None
        raise
    want = images.hw[img[at]]
    bad = np.flatnonzero((runs.sizes != want).any(1) & (want[:, 0] >= 0))
    if len(bad):
        n = int(at[bad[0]])
        raise ValueError(
            f"{what} {n} has an RLE of size {runs.sizes[bad[0]].tolist()}, but its image "
            f"{images.ids[img[n]]!r} is {want[bad[0]].tolist()}"
        )
    return runs


# --------------------------------------------------------------------------------------------- evaluation
def _top_per_cell(d: _Table, K: int) -> _Table:
    """Detections sorted by (image, category, -score, input order), the first 100 of each cell kept, with their
    rank in the cell (computeIoU / evaluateImg: a stable sort on -score, then ``dt[0:maxDets[-1]]``)."""
    cell = d.img * K + d.cat
    order = np.lexsort((np.arange(len(cell)), -d.score, cell))
    cell = cell[order]
    rank = np.arange(len(cell)) - np.searchsorted(cell, cell)
    keep = rank < MAX_DETS[-1]
    out = d.take(order[keep])
    out.rank = rank[keep]
    return out


@dataclass(frozen=True)
class _Pairs:
    """Every (detection, gt) of one (image, category) cell, grouped by detection: detection i's pairs are
    ``start[i] : start[i] + n_gt[i]``, its gts in input order."""

    dt: np.ndarray  # int64 [P] detection index (in the sorted detection table)
    gt: np.ndarray  # int64 [P] gt index (input order)
    start: np.ndarray  # int64 [D]
    n_gt: np.ndarray  # int64 [D]
    gt_order: np.ndarray  # int64 [Ng] gts sorted by cell (stable)
    gt_cell_start: np.ndarray  # int64 [D] position in gt_order of each detection's cell's first gt


def _pairs(d: _Table, g: _Table, K: int) -> _Pairs:
    cell_d = d.img * K + d.cat
    cell_g = g.img * K + g.cat
    gt_order = np.argsort(cell_g, kind="stable")
    sorted_cells = cell_g[gt_order]
    first = np.searchsorted(sorted_cells, cell_d)
    n_gt = np.searchsorted(sorted_cells, cell_d, side="right") - first
    start = np.cumsum(n_gt) - n_gt
    dt = np.repeat(np.arange(len(cell_d)), n_gt)
    within = np.arange(len(dt)) - np.repeat(start, n_gt)
    gt = gt_order[np.repeat(first, n_gt) + within]
    return _Pairs(dt, gt, start, n_gt, gt_order, first)


def _ious(d: _Table, g: _Table, p: _Pairs, iou_type: str) -> np.ndarray:
    """IoU of every pair (float64 [P]), as maskApi's rleIou / bbIou compute it."""
    crowd = g.crowd[p.gt]
    if iou_type == "bbox":
        return _box_iou(d.boxes[p.dt], g.boxes[p.gt], crowd)
    both = Runs.concat([d.runs, g.runs])
    # rleIou only walks the runs of pairs whose boxes overlap (the others are 0); here, of pairs whose columns do
    cols = both.columns()
    cd, cg = cols[p.dt], cols[len(d.img) + p.gt]
    near = (cd[:, 0] >= 0) & (cg[:, 0] >= 0) & (cd[:, 0] <= cg[:, 1]) & (cg[:, 0] <= cd[:, 1])
    inter = np.zeros(len(p.dt), dtype=np.int64)
    inter[near] = both.intersections(p.dt[near], len(d.img) + p.gt[near])
    a = both.area()
    a_d, a_g = a[p.dt], a[len(d.img) + p.gt]
    union = np.where(crowd, a_d, a_d + a_g - inter)
    out = np.zeros(len(p.dt))
    hit = inter > 0
    out[hit] = inter[hit].astype(np.float64) / union[hit].astype(np.float64)
    return out


def _box_iou(D: np.ndarray, G: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """bbIou, pair by pair, in its order of float operations."""
    w = np.minimum(D[:, 2] + D[:, 0], G[:, 2] + G[:, 0]) - np.maximum(D[:, 0], G[:, 0])
    h = np.minimum(D[:, 3] + D[:, 1], G[:, 3] + G[:, 1]) - np.maximum(D[:, 1], G[:, 1])
    i = w * h
    da, ga = D[:, 2] * D[:, 3], G[:, 2] * G[:, 3]
    u = np.where(crowd, da, da + ga - i)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), i / u, 0.0)


def _outside(area: np.ndarray) -> np.ndarray:
    """bool [N, A]: the area is outside each area range (ends included in the range)."""
    lo = np.array([r[0] for r in AREA_RANGES])
    hi = np.array([r[1] for r in AREA_RANGES])
    return (area[:, None] < lo) | (area[:, None] > hi)


def _match(d: _Table, g: _Table, p: _Pairs, ious: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """evaluateImg's greedy matching for every cell, area range and IoU threshold at once, one detection rank at a
    time. Returns (matched, ignored), bool [D, A, T] each."""
    A, T = len(AREA_RANGES), len(IOU_THRESHOLDS)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
    gt_ignored = g.crowd[:, None] | _outside(g.area)  # (Ng, A)
    dt_outside = _outside(d.area)  # (D, A)
    matched = np.zeros((len(d.img), A, T), dtype=bool)
    ignored = np.broadcast_to(dt_outside[:, :, None], matched.shape).copy()  # unmatched: ignored if outside
    first_dt = np.flatnonzero(d.rank == 0)  # one per cell that has detections
    n_dt = np.diff(np.r_[first_dt, len(d.img)])
    n_gt = p.n_gt[first_dt]
    # Cells with gts, bucketed by the gt count rounded up to a power of two (padding stays below 2x); within a
    # bucket the cells with more detections come first, so the cells still matching at rank r are a prefix.
    has_gt = n_gt > 0
    width = np.where(has_gt, 1 << np.ceil(np.log2(np.maximum(n_gt, 1))).astype(np.int64), 0)
    for Gp in np.unique(width[has_gt]):
        cells = np.flatnonzero(width == Gp)
        cells = cells[np.argsort(-n_dt[cells], kind="stable")]
        _match_bucket(first_dt[cells], n_dt[cells], int(Gp), p, ious, g.crowd, gt_ignored, thr, matched, ignored)
    return matched, ignored


def _match_bucket(first, n_dt, Gp, p, ious, crowd, gt_ignored, thr, matched, ignored) -> None:
    """Matching for cells with at most Gp gts each; ``first`` is each cell's first detection (rank 0)."""
    C, A, T = len(first), gt_ignored.shape[1], len(thr)
    slot = np.arange(Gp)
    valid = slot[None, :] < p.n_gt[first][:, None]  # (C, Gp) real gts
    gt_at = p.gt_order[np.minimum(p.gt_cell_start[first][:, None] + slot, len(p.gt_order) - 1)]  # (C, Gp) gt index
    ig = np.where(valid[:, None, :], gt_ignored[gt_at].transpose(0, 2, 1), True)  # (C, A, Gp)
    can_repeat = crowd[gt_at] & valid  # a crowd gt may take many detections
    taken = np.zeros((C, A, T, Gp), dtype=bool)
    for r in range(int(n_dt.max())):
        n = int(np.searchsorted(-n_dt, -r, side="left"))  # cells with more than r detections: a prefix
        c = slice(0, n)
        det = first[c] + r
        x = np.where(valid[c], ious[np.minimum(p.start[det][:, None] + slot, len(ious) - 1)], -1.0)  # (n, Gp)
        free = ~taken[c] | can_repeat[c][:, None, None, :]
        ok = free & (x[:, None, None, :] >= thr[None, None, :, None])  # (n, A, T, Gp)
        regular = ok & ~ig[c][:, :, None, :]
        pool = np.where(regular.any(-1, keepdims=True), regular, ok)  # regular gts first, then ignored ones
        value = np.where(pool, x[:, None, None, :], -np.inf)
        best = pool & (value == value.max(-1, keepdims=True))
        m = Gp - 1 - np.argmax(best[..., ::-1], axis=-1)  # (n, A, T) the last of the equal best
        hit = pool.any(-1)
        matched[det] = hit
        ig_m = np.take_along_axis(np.broadcast_to(ig[c][:, :, None, :], ok.shape), m[..., None], -1)[..., 0]
        ignored[det] = np.where(hit, ig_m, ignored[det])
        np.put_along_axis(
            taken[c], m[..., None], (hit | np.take_along_axis(taken[c], m[..., None], -1)[..., 0])[..., None], -1
        )


# --------------------------------------------------------------------------------------------- accumulation
def _accumulate(d: _Table, g: _Table, matched, ignored, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval.accumulate: precision (T, R, K, A, M), recall (T, K, A, M) and scores (T, R, K, A, M)."""
    T, R, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    regular = ~(g.crowd[:, None] | _outside(g.area))  # (Ng, A)
    n_regular = np.stack([np.bincount(g.cat, weights=regular[:, a], minlength=K) for a in range(A)], 1)  # (K, A)
    # All images pooled per category: by -score, ties in (image, rank) order as the stable sort of the
    # image-by-image concatenation leaves them.
    order = np.lexsort((d.rank, d.img, -d.score, d.cat))
    cat, rank, score = d.cat[order], d.rank[order], d.score[order]
    tp_all = (matched & ~ignored)[order]  # (D, A, T)
    fp_all = (~matched & ~ignored)[order]
    for m, max_det in enumerate(MAX_DETS):
        keep = rank < max_det
        tp, fp, sc = tp_all[keep], fp_all[keep], score[keep]
        bounds = np.searchsorted(cat[keep], np.arange(K + 1))
        for k in np.flatnonzero((n_regular > 0).any(1)):
            a_ok = n_regular[k] > 0
            s = slice(bounds[k], bounds[k + 1])
            q, ss, rc_last = _precision_curve(tp[s], fp[s], sc[s], n_regular[k])
            precision[:, :, k, a_ok, m] = q[a_ok].transpose(1, 2, 0)
            scores[:, :, k, a_ok, m] = ss[a_ok].transpose(1, 2, 0)
            recall[:, k, a_ok, m] = rc_last[a_ok].T
    return precision, recall, scores


def _precision_curve(tp, fp, score, n_regular) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One category at one maxDets: interpolated precision and its scores (A, T, R) at the recall thresholds and
    the final recall (A, T), from its pooled, sorted detections' tp / fp flags (n, A, T)."""
    n = len(tp)
    A, T, R = tp.shape[1], tp.shape[2], len(RECALL_THRESHOLDS)
    if n == 0:
        return np.zeros((A, T, R)), np.zeros((A, T, R)), np.zeros((A, T))
    tp_sum = np.cumsum(tp, axis=0).astype(np.float64)
    fp_sum = np.cumsum(fp, axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = tp_sum / n_regular[None, :, None]  # inf/nan only where the area range has no regular gt (unused)
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]  # precision made monotone from the right
    # np.searchsorted(rc, RECALL_THRESHOLDS, 'left') for every (A, T) column at once: the number of detections
    # whose recall is below each threshold (rc is sorted within each column).
    below = np.searchsorted(RECALL_THRESHOLDS, rc, side="right")  # (n, A, T): thresholds <= rc
    col = np.arange(A * T).reshape(1, A, T) * (R + 1)
    hist = np.bincount((col + below).ravel(), minlength=A * T * (R + 1)).reshape(A, T, R + 1)
    at = np.cumsum(hist, axis=-1)[..., :R]  # (A, T, R)
    reached = at < n
    a_idx, t_idx = np.arange(A)[:, None, None], np.arange(T)[None, :, None]
    safe = np.minimum(at, n - 1)
    q = np.where(reached, pr[safe, a_idx, t_idx], 0.0)
    ss = np.where(reached, score[safe], 0.0)
    return q, ss, rc[-1]


def _summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """COCOeval.summarize's 12 numbers: means over the cells that are not -1 (-1 if none is)."""
    out = np.zeros(len(_STATS))
    for n, (ap, iou, area, max_det) in enumerate(_STATS):
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        s = s[..., AREA_LABELS.index(area), MAX_DETS.index(max_det)]
        valid = s[s > -1]
        out[n] = np.mean(valid) if len(valid) else -1
    return out
