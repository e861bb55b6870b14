"""Click simulation for interactive segmentation, and NoC@85 / NoC@90.

Protocol (Xu et al., CVPR 2016, "Deep Interactive Object Selection", Sec. 4; used by the
interactive-segmentation benchmarks and by SegAgent, Zhu et al., CVPR 2025, for its click trajectories): after
each prediction, the errors are split into false-negative regions (object pixels the prediction missed) and
false-positive regions; the next click goes to the **largest error region**, at its interior point: the pixel
farthest from the region's border (maximum of the Euclidean distance transform, with the image border counting
as outside). A click in a false negative region is positive, one in a false positive region negative. The
first click, on an empty prediction, thus lands at the center of the object. ``strategy="deepest"`` is the
variant of RITM (Sofiiuk et al., 2022): the click goes to the pixel with the largest distance over all error
pixels, whatever region it is in.

NoC@t (number of clicks) is the number of clicks after which IoU first reaches t; a sample that never reaches
it within ``max_clicks`` counts ``max_clicks`` (20 by convention) and is a failure (NoF@t).

Everything is torch (CPU or GPU): the distance transform is exact (separable, O(h w^2) on the region's box)
and connected components (4-connectivity) use min-label propagation with pointer jumping. Ties go to the first
pixel in raster order; regions tie toward false negatives, then the first region."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Click", "ClickTrace", "distance_transform", "connected_components", "next_click", "simulate", "noc"]


@dataclass(frozen=True)
class Click:
    y: int
    x: int
    positive: bool  # True: "this is object", False: "this is not"


@dataclass(frozen=True)
class ClickTrace:
    """One simulated interaction: the clicks and the IoU after each one."""

    clicks: tuple[Click, ...]
    ious: tuple[float, ...]
    max_clicks: int = 20  # the budget it ran with: NoC of a failure

    def noc(self, threshold: float) -> int:
        return noc(self.ious, threshold, self.max_clicks)


def _t(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))


def distance_transform(mask) -> torch.Tensor:
    """Exact Euclidean distance (float64 [H, W]) of each True pixel to the nearest False pixel or to the
    outside of the image (pixels beyond the border count as False); 0 on False pixels."""
    m = _t(mask) != 0
    if m.dim() != 2:
        raise ValueError(f"mask must be [H, W], got shape {tuple(m.shape)}")
    H, W = m.shape
    if H == 0 or W == 0 or not m.any():
        return torch.zeros(H, W, dtype=torch.float64, device=m.device)
    # Crop to the True pixels' box plus a 1-pixel ring: the ring is False, so nearest False pixels lie inside.
    ys, xs = torch.nonzero(m, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    crop = F.pad(m[y0:y1, x0:x1].to(torch.uint8), (1, 1, 1, 1)).bool()  # (h, w)
    h, w = crop.shape
    # Pass 1, along columns: distance to the nearest False pixel above or below.
    iy = torch.arange(h, device=m.device).unsqueeze(1).expand(h, w)
    above = torch.where(crop, torch.full_like(iy, -(h + w)), iy).cummax(0).values
    below = torch.where(crop, torch.full_like(iy, 2 * (h + w)), iy).flip(0).cummin(0).values.flip(0)
    g2 = torch.minimum(iy - above, below - iy).double().square()  # (h, w)
    # Pass 2, along rows: d2(y, x) = min over x' of (x - x')^2 + g2(y, x'), in row chunks to bound memory.
    ix = torch.arange(w, device=m.device, dtype=torch.float64)
    dx2 = (ix[:, None] - ix[None, :]).square()  # (w, w)
    d2 = torch.empty(h, w, dtype=torch.float64, device=m.device)
    step = max(1, (1 << 22) // (w * w))
    for a in range(0, h, step):
        d2[a : a + step] = (g2[a : a + step, None, :] + dx2[None]).min(-1).values
    out = torch.zeros(H, W, dtype=torch.float64, device=m.device)
    out[y0:y1, x0:x1] = d2[1:-1, 1:-1].sqrt()
    return out


def connected_components(mask) -> tuple[torch.Tensor, int]:
    """4-connected components: (int64 labels [H, W] with 0 = background and 1..n numbered in raster order of
    each component's first pixel, n)."""
    m = _t(mask) != 0
    if m.dim() != 2:
        raise ValueError(f"mask must be [H, W], got shape {tuple(m.shape)}")
    H, W = m.shape
    big = H * W
    # Every pixel holds the index of a pixel of its component; repeat until each holds the smallest one:
    # take the minimum along horizontal runs, then vertical runs, then follow labels (pointer jumping).
    rows, cols = _run_ids(m), _run_ids(m.T).T
    idx = torch.arange(big, device=m.device).reshape(H, W)
    lab = torch.where(m, idx, torch.full_like(idx, big))
    while True:
        new = _run_min(_run_min(lab, rows, big), cols, big)
        flat = torch.cat([new.reshape(-1), torch.tensor([big], device=m.device)])
        while True:
            jumped = flat[flat]
            if torch.equal(jumped, flat):
                break
            flat = jumped
        new = flat[:-1].reshape(H, W)
        if torch.equal(new, lab):
            break
        lab = new
    roots, dense = torch.unique(lab, return_inverse=True)
    n = int((roots < big).sum())
    return torch.where(m, dense + 1, torch.zeros_like(dense)), n


def _run_ids(m: torch.Tensor) -> torch.Tensor:
    """Id (1..R) of the horizontal run of True pixels each pixel is in; 0 on False pixels."""
    start = m.clone()
    start[:, 1:] &= ~m[:, :-1]
    return torch.cumsum(start.reshape(-1).long(), 0).reshape(m.shape) * m


def _run_min(lab: torch.Tensor, ids: torch.Tensor, big: int) -> torch.Tensor:
    n = int(ids.max()) + 1
    low = torch.full((n,), big, dtype=lab.dtype, device=lab.device)
    low = low.scatter_reduce(0, ids.reshape(-1), lab.reshape(-1), reduce="amin")
    return torch.where(ids > 0, low[ids], lab)


def next_click(pred, gt, clicked=None, strategy: str = "largest") -> Click | None:
    """The simulated user's next click given the current prediction and the ground truth (None: no error).

    ``clicked`` (bool [H, W]) marks pixels already clicked; they are not clicked again.
    ``strategy``: "largest" (largest error region, the issue's and SegAgent's protocol) or "deepest" (RITM).
    """
    p, g = _t(pred) != 0, _t(gt) != 0
    if p.shape != g.shape or p.dim() != 2:
        raise ValueError(f"pred and gt must both be [H, W], got {tuple(p.shape)} and {tuple(g.shape)}")
    g = g.to(p.device)
    fn, fp = g & ~p, p & ~g
    free = torch.ones_like(p) if clicked is None else ~(_t(clicked).to(p.device) != 0)
    if strategy == "largest":
        best = None  # (area, is_fn) of the largest region so far
        for errors, positive in ((fn, True), (fp, False)):
            labels, n = connected_components(errors)
            if n == 0:
                continue
            areas = torch.bincount(labels.reshape(-1), minlength=n + 1)[1:]
            k = int(areas.argmax())
            if best is None or int(areas[k]) > best[0]:
                best = (int(areas[k]), positive, labels == k + 1)
        if best is None:
            return None
        _, positive, region = best
        return _deepest(region, free, positive)
    if strategy == "deepest":
        if not (fn.any() or fp.any()):
            return None
        d_fn, d_fp = distance_transform(fn) * free, distance_transform(fp) * free
        positive = bool(d_fn.max() > d_fp.max()) or not fp.any()  # RITM: strictly deeper false negative
        return _deepest(fn if positive else fp, free, positive)
    raise ValueError(f"strategy must be 'largest' or 'deepest', got {strategy!r}")


def _deepest(region: torch.Tensor, free: torch.Tensor, positive: bool) -> Click:
    d = distance_transform(region) * free
    if not bool((d > 0).any()):  # every pixel of the region already clicked: click its first pixel
        d = region.double()
    i = int(torch.argmax(d.reshape(-1)))  # first maximum in raster order
    return Click(i // region.shape[1], i % region.shape[1], positive)


def simulate(
    segmenter: Callable[[Sequence[Click], torch.Tensor | None], object],
    gt,
    max_clicks: int = 20,
    stop_at: float | None = None,
    strategy: str = "largest",
) -> ClickTrace:
    """Run the click protocol against ``segmenter(clicks, previous_mask) -> mask [H, W]``.

    Starts from an empty prediction; stops after ``max_clicks``, when no error is left, or (if given) when the
    IoU reaches ``stop_at``. Returns the clicks and the IoU after each click.
    """
    from masklab.seg.metrics import iou as _iou

    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    g = _t(gt) != 0
    if not g.any():
        raise ValueError("click simulation needs a non-empty object; the ground truth is empty")
    pred = torch.zeros_like(g)
    clicked = torch.zeros_like(g)
    clicks: list[Click] = []
    ious: list[float] = []
    prev = None
    for _ in range(max_clicks):
        c = next_click(pred, g, clicked, strategy)
        if c is None:
            break
        clicks.append(c)
        clicked[c.y, c.x] = True
        out = _t(segmenter(tuple(clicks), prev))
        if tuple(out.shape) != tuple(g.shape):
            raise ValueError(f"segmenter returned shape {tuple(out.shape)}, expected {tuple(g.shape)}")
        pred = out.to(g.device) != 0
        prev = pred
        ious.append(float(_iou(pred, g)[0]))
        if stop_at is not None and ious[-1] >= stop_at:
            break
    return ClickTrace(tuple(clicks), tuple(ious), max_clicks)


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Clicks needed to first reach IoU >= threshold; ``max_clicks`` if it is never reached within them."""
    for k, v in enumerate(list(ious)[:max_clicks], start=1):
        if v >= threshold:
            return k
    return max_clicks
