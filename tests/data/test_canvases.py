"""The canvas world: deterministic scenes whose masks, boxes and referring expressions are exact."""

import contextlib
import copy
import io
import re

import numpy as np
import pytest
from pycocotools import mask as coco
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from masklab.data.canvases import CATEGORIES, canvas, canvases, refers_to, to_coco
from masklab.seg.cocoeval import evaluate


@pytest.fixture(scope="module")
def world():
    return canvases(0, 16) + canvases(1, 4, size=64) + canvases(2, 4, size=128)


def test_a_canvas_is_a_function_of_seed_and_index_only():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = canvas(3, 5), canvas(3, 5)
    assert np.array_equal(np.random.get_state()[1], before)  # the global RNG is neither read nor moved
    for f in ("image", "masks", "boxes"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert a.labels == b.labels and a.expressions == b.expressions
    assert np.array_equal(canvases(3, 3, start=4)[1].image, a.image)
    assert not np.array_equal(canvas(3, 6).image, a.image) and not np.array_equal(canvas(4, 5).image, a.image)


def test_masks_boxes_and_pixels_are_exact(world):
    for c in world:
        H, W, _ = c.image.shape
        assert H == W >= 64 and c.image.dtype == np.float32 and 0 <= c.image.min() and c.image.max() <= 1
        assert 1 <= len(c.masks) <= 5 and len(c.labels) == len(c.masks) == len(c.boxes)
        assert set(c.labels) <= set(CATEGORIES)
        assert c.masks.any(axis=(1, 2)).all() and c.masks.sum(0).max() <= 1  # non-empty, disjoint
        for m, box in zip(c.masks, c.boxes, strict=True):
            ys, xs = np.nonzero(m)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert len(np.unique(c.image[m], axis=0)) == 1  # one flat colour: the mask is exactly what is painted


def scene_of(c):
    """An independent reading of the scene from the masks: class, area and pixel extents of each object."""
    out = []
    for m, lab in zip(c.masks, c.labels, strict=True):
        ys, xs = np.nonzero(m)
        out.append({"cls": lab, "area": int(m.sum()), "x0": xs.min(), "x1": xs.max(), "y0": ys.min(), "y1": ys.max()})
    return out


def matches(text, scene):
    """Objects described by ``text``, from the grammar's definitions in the module docstring."""
    objs = range(len(scene))
    is_cls = lambda o, c: c == "object" or scene[o]["cls"] == c  # noqa: E731
    if m := re.fullmatch(r"the (\S+) (left of|right of|above|below) the (\S+)", text):
        (anchor,) = [o for o in objs if scene[o]["cls"] == m[3]]  # the anchor names one object, or this fails
        a = scene[anchor]
        side = {
            "left of": lambda s: s["x1"] < a["x0"],
            "right of": lambda s: s["x0"] > a["x1"],
            "above": lambda s: s["y1"] < a["y0"],
            "below": lambda s: s["y0"] > a["y1"],
        }[m[2]]
        return [o for o in objs if is_cls(o, m[1]) and side(scene[o])]
    if m := re.fullmatch(r"the (largest|smallest|leftmost|rightmost|topmost|bottommost) (\S+)", text):
        pool = [o for o in objs if is_cls(o, m[2])]
        key = {
            "largest": lambda o: -scene[o]["area"],
            "smallest": lambda o: scene[o]["area"],
            "leftmost": lambda o: scene[o]["x0"],
            "rightmost": lambda o: -scene[o]["x1"],
            "topmost": lambda o: scene[o]["y0"],
            "bottommost": lambda o: -scene[o]["y1"],
        }[m[1]]
        best = min(key(o) for o in pool)
        return [o for o in pool if key(o) == best]
    m = re.fullmatch(r"the (\S+)", text)
    return [o for o in objs if is_cls(o, m[1])]


def test_every_expression_names_exactly_one_object(world):
    named = objects = 0
    for c in world:
        scene = scene_of(c)
        for text, target in c.expressions:
            assert matches(text, scene) == [target], (text, c.labels)
            assert refers_to(text, c.masks, c.labels) == [target]
        named += len({t for _, t in c.expressions})
        objects += len(c.labels)
    assert named >= 0.9 * objects  # nearly every object has an expression
    every = " | ".join(text for c in world for text, _ in c.expressions)
    for form in (" left of the ", " right of the ", " above the ", " below the ", "the largest ", "most "):
        assert form in every


def reference_stats(gt, dts):
    with contextlib.redirect_stdout(io.StringIO()):
        G = COCO()
        G.dataset = copy.deepcopy(gt)
        G.createIndex()
        dd = copy.deepcopy(dts)
        for d in dd:
            d["segmentation"] = dict(d["segmentation"], counts=d["segmentation"]["counts"].encode())
        E = COCOeval(G, G.loadRes(dd), "segm")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return G, E.stats


def test_to_coco_is_ground_truth_that_pycocotools_reads_and_cocoeval_scores(world):
    gt = to_coco(world)
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"], "score": 1.0}
        for a in gt["annotations"]
    ]
    G, stats = reference_stats(gt, perfect)
    assert evaluate(gt, perfect).stats[0] == stats[0] == 1.0
    masks = [m for c in world for m in c.masks]
    for a, m in zip(gt["annotations"], masks, strict=True):
        assert np.array_equal(G.annToMask(a), m)
        assert a["area"] == coco.area(G.annToRLE(a)) and a["bbox"] == coco.toBbox(G.annToRLE(a)).tolist()
    assert {(r["ann_id"], r["sentence"]) for r in gt["refs"]} >= {
        (gt["annotations"][0]["id"], world[0].expressions[0][0])
    }
    # shifted masks with random scores and some wrong classes: the same 12 numbers as pycocotools
    rng = np.random.default_rng(0)
    shifted = []
    for d, m in zip(perfect, masks, strict=True):
        m = np.roll(m, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        cat = d["category_id"] if rng.random() < 0.8 else int(rng.integers(1, len(CATEGORIES) + 1))
        r = coco.encode(np.asfortranarray(m.astype(np.uint8)))
        seg = {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}
        shifted.append(dict(d, category_id=cat, segmentation=seg, score=float(rng.random())))
    np.testing.assert_allclose(evaluate(gt, shifted).stats, reference_stats(gt, shifted)[1], rtol=0, atol=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="size must be an int of at least 64"):
        canvas(0, 0, size=63)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        canvas(-1, 0)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        canvases(0, -2)
    with pytest.raises(ValueError, match="not one of the canvas grammar's forms"):
        refers_to("the cat on the mat", np.zeros((0, 4, 4), bool), [])
    with pytest.raises(ValueError, match="items\\[0\\] must be a Canvas"):
        to_coco([{"image": None}])
