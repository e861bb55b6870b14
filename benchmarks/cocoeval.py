"""COCO evaluation benchmark: masklab.seg.cocoeval.evaluate vs pycocotools' COCOeval in one process.

Run: .venv/bin/python benchmarks/cocoeval.py [--images 500] [--dets 20] [--size 480 640] [--repeat 3]

The data is synthetic and COCO-like: per image 3-12 ground-truth objects drawn as star-shaped polygons (as COCO's
gt), 1 in 20 of them a crowd region given as RLE, in 20 categories; ``--dets`` detections per image as RLE (as
detectors write them), most of them jittered copies of a gt, some with the wrong category, the rest false
positives. pycocotools' time is COCO() + loadRes + evaluate + accumulate + summarize; masklab's is evaluate(). Both
get their own deep copy of the inputs outside the timer (loadRes edits its input). Prints the best of --repeat
runs (interleaved), the ratio, and the largest difference of the 12 stats (which must be 0 or below 1e-9).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np
import torch
from pycocotools import mask as coco
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from masklab.seg.cocoeval import evaluate
from masklab.seg.polygon import polygons_to_rle


def star(rng, cx, cy, r, k) -> list[float]:
    """A star-shaped polygon of k vertices around (cx, cy) with radii in [r/2, r]."""
    angle = np.sort(rng.uniform(0, 2 * np.pi, k))
    radius = rng.uniform(r / 2, r, k)
    return np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], 1).ravel().tolist()


def dataset(seed: int, n_images: int, n_dets: int, size: tuple[int, int], n_cats: int = 20):
    rng = np.random.default_rng(seed)
    H, W = size
    images = [{"id": i + 1, "height": H, "width": W} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(n_cats)]
    anns, dets = [], []
    for im in images:
        objects = []
        for _ in range(rng.integers(3, 13)):
            r = float(rng.choice([8, 24, 60, 120])) * rng.uniform(0.5, 1.0)  # small to large objects
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            poly = star(rng, cx, cy, r, int(rng.integers(6, 16)))
            cat = int(rng.integers(1, n_cats + 1))
            crowd = rng.random() < 0.05
            rle = polygons_to_rle([poly], H, W)[0]
            a = float(coco.area({"size": rle["size"], "counts": rle["counts"].encode()}))
            seg = rle if crowd else [poly]
            box = [cx - r, cy - r, 2 * r, 2 * r]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": cat, "segmentation": seg,
                         "area": a, "bbox": box, "iscrowd": int(crowd)})  # fmt: skip
            objects.append((cx, cy, r, cat))
        for _ in range(n_dets):
            if rng.random() < 0.75:  # a jittered copy of an object, sometimes with the wrong category
                cx, cy, r, cat = objects[rng.integers(len(objects))]
                cx, cy, r = cx + rng.normal(0, r / 6), cy + rng.normal(0, r / 6), r * rng.uniform(0.7, 1.3)
                cat = cat if rng.random() < 0.8 else int(rng.integers(1, n_cats + 1))
            else:
                cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), float(rng.uniform(4, 80))
                cat = int(rng.integers(1, n_cats + 1))
            rle = polygons_to_rle([star(rng, cx, cy, max(r, 2.0), int(rng.integers(6, 16)))], H, W)[0]
            dets.append({"image_id": im["id"], "category_id": cat, "segmentation": rle, "score": float(rng.random()),
                         "bbox": [cx - r, cy - r, 2 * r, 2 * r]})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}, dets


def run_pycocotools(gt: dict, dets: list, iou_type: str) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        G = COCO()
        G.dataset = gt
        G.createIndex()
        E = COCOeval(G, G.loadRes(dets), iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats


def as_bytes(dets: list) -> list:
    """pycocotools' loadRes wants compressed RLE counts as bytes."""
    for d in dets:
        d["segmentation"] = {"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"].encode()}
    return dets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--dets", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gt, dets = dataset(0, args.images, args.dets, tuple(args.size))
    print(
        f"{args.images} images of {args.size[0]}x{args.size[1]}, {len(gt['annotations'])} gt, {len(dets)} detections"
        f" (numpy {np.__version__})"
    )
    print(f"{'iou_type':8s} {'pycocotools s':>13s} {'masklab s':>9s} {'speed-up':>8s} {'max |stats diff|':>16s}")
    for iou_type in ("segm", "bbox"):
        best = {"coco": float("inf"), "ours": float("inf")}
        diff = 0.0
        for _ in range(args.repeat):
            g, d = copy.deepcopy(gt), as_bytes(copy.deepcopy(dets))
            t0 = time.perf_counter()
            ref = run_pycocotools(g, d, iou_type)
            t1 = time.perf_counter()
            g, d = copy.deepcopy(gt), copy.deepcopy(dets)
            t2 = time.perf_counter()
            ours = evaluate(g, d, iou_type).stats
            t3 = time.perf_counter()
            best["coco"], best["ours"] = min(best["coco"], t1 - t0), min(best["ours"], t3 - t2)
            diff = max(diff, float(np.abs(ours - ref).max()))
        ratio = best["coco"] / best["ours"]
        print(f"{iou_type:8s} {best['coco']:13.3f} {best['ours']:9.3f} {ratio:7.1f}x {diff:16.2e}")


if __name__ == "__main__":
    main()
