"""Polygons to COCO RLE with pycocotools' rasterisation (``rleFrPoly`` in cocoapi's ``common/maskApi.c``).

COCO writes an object as one or more polygons ``[x1, y1, x2, y2, ...]`` in pixel coordinates. ``rleFrPoly`` is
followed step by step, on all polygons at once (no loop over polygons or edges):

1. Scale the vertices by 5 and round (``(int)(5 v + 0.5)``, C truncation toward zero), closing the polygon.
2. Walk every edge on the 5x grid, one point per step along its longer axis, rounding the other coordinate
   (an edge is always walked from its lower end along that axis, so both directions give the same points).
3. Keep the steps that cross a pixel column: at x = (u + 0.5) / 5 - 0.5 when that is a whole column inside
   the image, with y the smaller of the two step ends scaled the same way, clamped to [0, H] and rounded up.
4. Each kept point (x, y) toggles the mask at column-major position x H + y: sorted, differenced, with
   coinciding toggles cancelled as ``rleFrPoly`` cancels them, these are the RLE counts.

Deliberate differences from pycocotools, each a ``ValueError`` instead of a silent result: a polygon needs at
least 3 points (pycocotools' ``frPyObjects`` reads a 4-value polygon as a box [x, y, w, h], cocoapi issue #369,
and fails on shorter ones); an odd number of values is refused (pycocotools drops the last one); coordinates
must be finite.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from masklab.seg.rle import Runs

__all__ = ["polygons_to_rle", "polygon_runs", "box_polygon", "check_polygon"]

_SCALE = 5.0  # rleFrPoly walks the boundary on a grid 5x finer than the pixels


def polygons_to_rle(polygons: Sequence[Sequence[float]], h: int, w: int) -> list[dict]:
    """One compressed RLE per polygon (``counts`` a str), as pycocotools' ``frPyObjects(polygons, h, w)``."""
    return polygon_runs(polygons, h, w).to_rles()


def box_polygon(box: Sequence[float]) -> list[float]:
    """The polygon COCO rasterises for a box [x, y, w, h] (``rleFrBbox``; ``loadRes`` for box-only results)."""
    x, y, bw, bh = (float(v) for v in box)
    return [x, y, x, y + bh, x + bw, y + bh, x + bw, y]


def polygon_runs(polygons: Sequence[Sequence[float]], h, w, names: Sequence[str] | None = None) -> Runs:
    """:class:`Runs` of each polygon rasterised in an h x w image, all polygons at once. ``h`` and ``w`` are
    ints, or int arrays with one image size per polygon; ``names`` name the polygons in error messages."""
    flat, k = _flatten(polygons, names)
    h, w = _check_sizes(h, w, len(k))
    if not len(k):
        return Runs.concat([])
    # 1. vertices on the 5x grid; (int) in C truncates toward zero
    x = np.trunc(_SCALE * flat[0::2] + 0.5).astype(np.int64)
    y = np.trunc(_SCALE * flat[1::2] + 0.5).astype(np.int64)
    cx, cy, owner = _crossings(*_edges(x, y, k), h, w)
    return _toggles_to_runs(cx * h[owner] + cy, owner, h, w)


def _flatten(polygons, names) -> tuple[np.ndarray, np.ndarray]:
    """All coordinates as one float64 array and the points per polygon, checked as :func:`check_polygon` checks
    one polygon (which names the culprit when a check fails)."""
    polygons = list(polygons)
    try:
        lens = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
        flat = np.fromiter(itertools.chain.from_iterable(polygons), dtype=np.float64, count=int(lens.sum()))
        bad = (lens % 2 == 1) | (lens < 6)
        if bad.any() or not np.isfinite(flat).all() or any(isinstance(p, str | bytes | Mapping) for p in polygons):
            raise ValueError
    except (TypeError, ValueError):
        for n, p in enumerate(polygons):
            check_polygon(p, names[n] if names is not None else f"polygon {n}")
        raise
    return flat, lens // 2


def _check_sizes(h, w, n: int) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name, v in (("h", h), ("w", w)):
        a = np.asarray(v)
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer) or a.ndim > 1 or (a < 1).any():
            raise ValueError(f"{name} must be a positive int (an image of size 0 has no mask), got {v!r}")
        out.append(np.broadcast_to(a.astype(np.int64), (n,)))
    return out[0], out[1]


def check_polygon(p, what: str = "polygon") -> np.ndarray:
    """A polygon as float64 [2k], or a one-line ``ValueError`` that starts with ``what``: it must hold an even
    number of finite values, at least 3 points."""
    if isinstance(p, str | bytes | Mapping) or not isinstance(p, Sequence | np.ndarray):
        raise ValueError(f"{what} must be a list of numbers [x1, y1, x2, y2, ...], got {type(p).__name__}")
    try:
        a = np.asarray(p, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold numbers only, got {list(p)[:6]!r}") from None
    if len(a) % 2:
        raise ValueError(f"{what} has an odd number of values ({len(a)}); it needs x, y pairs")
    if len(a) < 6:
        raise ValueError(
            f"{what} has {len(a) // 2} points; a polygon needs at least 3 "
            "(a box [x, y, w, h] is not a polygon: give it as 'bbox')"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"{what} has a coordinate that is not finite")
    return a


def _edges(x: np.ndarray, y: np.ndarray, k: np.ndarray):
    """Step 2's edges on the 5x grid, each oriented as rleFrPoly walks it: along x (dx >= dy) from its left end,
    else along y from its top end, with the slope of the other coordinate per step."""
    first = np.cumsum(k) - k
    nxt = np.arange(len(x)) + 1
    nxt[first + k - 1] = first  # each polygon closes on its first vertex
    xs, xe, ys, ye = x, x[nxt], y, y[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    along_x = dx >= dy
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)  # a repeated vertex (0/0) walks no step
    return np.repeat(np.arange(len(k)), k), along_x, xs, ys, dx, dy, slope


def _crossings(poly, along_x, xs, ys, dx, dy, slope, h: np.ndarray, w: np.ndarray):
    """Step 3 without walking every step: the (column, row, polygon) of each step that crosses a pixel column.

    rleFrPoly keeps a step (u0, v0) -> (u1, v1) of the walk when min(u0, u1) = 5 X + 2 for a column X in
    [0, w - 1] ((min + 0.5) / 5 - 0.5 is then the whole number X) and records y = ceil(clip((min(v0, v1) + 0.5)
    / 5 - 0.5, 0, h)). The walk's u moves by at most 1 per step, so each edge crosses each column between its
    ends exactly once: along x at step t = 5 X + 2 - xs; along y at the first step where the rounded u passes
    5 X + 2, found by its closed form and then checked against the same float formula C evaluates. Steps where
    two edges meet repeat a vertex (same u) and never count.
    """
    out = [_crossings_along_x(along_x & (dx > 0), poly, xs, ys, dx, slope, w)]
    out.append(_crossings_along_y(~along_x & (slope != 0), poly, xs, ys, dy, slope, w))
    X = np.concatenate([o[0] for o in out])
    v = np.concatenate([o[1] for o in out])
    owner = np.concatenate([o[2] for o in out])
    yd = (v.astype(np.float64) + 0.5) / _SCALE - 0.5
    yd = np.ceil(np.clip(yd, 0, h[owner]))
    return X, yd.astype(np.int64), owner


def _columns(lo_u, hi_u, w):
    """Columns X with lo_u <= 5 X + 2 and 5 X + 3 <= hi_u, inside [0, w - 1]: (edge of each, X)."""
    lo = np.maximum(-((2 - lo_u) // 5), 0)  # ceil((lo_u - 2) / 5)
    hi = np.minimum((hi_u - 3) // 5, w - 1)
    n = np.maximum(hi - lo + 1, 0)
    edge = np.repeat(np.arange(len(lo)), n)
    return edge, lo[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(n) - n, n)


def _crossings_along_x(sel, poly, xs, ys, dx, slope, w):
    """Edges walked along x: u = xs + t, v = (int)(ys + slope t + 0.5); the step (t, t + 1) starts at u = 5X+2."""
    idx = np.flatnonzero(sel)
    xs, ys, dx, slope, owner = xs[idx], ys[idx], dx[idx], slope[idx], poly[idx]
    e, X = _columns(xs, xs + dx, w[owner])
    t = 5 * X + 2 - xs[e]
    v0 = np.trunc(ys[e] + slope[e] * t + 0.5)
    v1 = np.trunc(ys[e] + slope[e] * (t + 1) + 0.5)
    return X, np.minimum(v0, v1).astype(np.int64), owner[e]


def _crossings_along_y(sel, poly, xs, ys, dy, slope, w):
    """Edges walked along y: v = ys + t, u = (int)(xs + slope t + 0.5), monotone in t; the step (t - 1, t) where u
    first reaches 5X+3 (slope > 0) or first falls to 5X+2 (slope < 0) crosses column X, and min(v) = ys + t - 1."""
    idx = np.flatnonzero(sel)
    xs, ys, dy, slope, owner = xs[idx], ys[idx], dy[idx], slope[idx], poly[idx]

    def u(e, t):  # C: (int)(xs + s * t + .5), truncation toward zero
        return np.trunc(xs[e] + slope[e] * t + 0.5)

    ends = np.arange(len(xs))
    u_first, u_last = u(ends, 0), u(ends, dy)
    up = slope > 0
    e, X = _columns(
        np.where(up, u_first, u_last).astype(np.int64), np.where(up, u_last, u_first).astype(np.int64), w[owner]
    )
    up = up[e]
    target = 5 * X + 2.5 - xs[e]  # u(t) >= 5X+3 <=> xs + s t + .5 >= 5X+3 <=> s t >= target (s > 0)
    t = np.where(up, np.ceil(target / slope[e]), np.floor(target / slope[e]) + 1)
    t = np.clip(t, 1, dy[e]).astype(np.int64)

    def past(t):  # the step to t has crossed
        return np.where(up, u(e, t) >= 5 * X + 3, u(e, t) <= 5 * X + 2)

    for _ in range(2):  # the closed form may be one step off where C's rounding differs from exact arithmetic
        t = np.where(past(t - 1) & (t > 1), t - 1, t)
        t = np.where(~past(t) & (t < dy[e]), t + 1, t)
    return X, ys[e] + t - 1, owner[e]


def _toggles_to_runs(at: np.ndarray, poly: np.ndarray, h: np.ndarray, w: np.ndarray) -> Runs:
    """Step 4: sorted toggle positions (plus h*w at the end) -> run lengths, cancelling as rleFrPoly does.

    rleFrPoly walks the differences a[0], a[1], ...: a[0] is always a count; a later zero (two toggles at one
    place) is dropped together with the value after it, which is added to the previous count. So in a stretch
    of consecutive zeros the zeros pair up, and an odd stretch merges the next value into the previous count.
    """
    hw = h * w
    base = np.cumsum(hw + 1) - (hw + 1)  # polygon n's toggles on [base_n, base_n + h w] of one line
    line = np.sort(np.concatenate([at + base[poly], base + hw]))
    start = np.searchsorted(line, base)  # every polygon has its h*w entry, so none is empty
    diff = np.diff(line, prepend=0)
    diff[start] = line[start] - base
    first = np.zeros(len(line), bool)
    first[start] = True
    zero = (diff == 0) & ~first
    # stretches of zeros (never across polygons: a polygon's first entry is not a "zero")
    z = np.r_[False, zero, False]
    begins = np.flatnonzero(z[1:] & ~z[:-1])
    ends = np.flatnonzero(~z[1:] & z[:-1])  # one past each stretch
    after = ends[((ends - begins) % 2 == 1) & (ends < len(line))]
    after = after[~first[after]]  # the value after an odd stretch, if the polygon goes on
    merged = np.zeros(len(line), bool)
    merged[after] = True
    kept = np.flatnonzero(first | (~zero & ~merged))
    counts = np.add.reduceat(diff, kept)  # zeros add nothing; a merged value joins the count before it
    offsets = np.searchsorted(kept, np.r_[start, len(line)])
    return Runs(counts.astype(np.int64), offsets.astype(np.int64), np.stack([h, w], axis=1))
