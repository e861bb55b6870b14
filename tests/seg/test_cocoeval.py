"""masklab.seg.cocoeval against pycocotools' COCOeval (evaluate, accumulate, summarize): every number equal."""

import contextlib
import copy
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from masklab.seg.cocoeval import STAT_NAMES, evaluate


def rle(m: np.ndarray, text: bool = True) -> dict:
    r = coco.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode() if text else r["counts"]}


def scene(seed: int, n_img=6, n_cat=3, size=(30, 40), crowd=0.15, dets=8, polygons=0.3, ties=False, boxes=True):
    """Random gt (blobs as RLE or polygons, some crowds, some areas that are not the mask's) and detections (shifted
    copies of gts, some with the wrong category, and noise blobs) over several images and categories."""
    rng = np.random.default_rng(seed)
    H, W = size
    images = [{"id": 3 * i + 1, "height": H, "width": W} for i in range(n_img)]
    cats = [{"id": 2 * c + 5} for c in range(n_cat)]

    def blob():
        m = np.zeros((H, W), bool)
        y, x = rng.integers(0, H), rng.integers(0, W)
        m[y : y + rng.integers(1, H // 2 + 2), x : x + rng.integers(1, W // 2 + 2)] = True
        return m & (rng.random((H, W)) < 0.9) if rng.random() < 0.5 else m

    anns, dts = [], []
    for im in images:
        masks = []
        for _ in range(rng.integers(0, 5)):
            if rng.random() < polygons:
                poly = [rng.uniform(0, W, 2 * rng.integers(3, 7)).tolist() for _ in range(rng.integers(1, 3))]
                for p in poly:
                    p[1::2] = (np.array(p[1::2]) * H / W).tolist()
                m, seg = coco.decode(coco.merge(coco.frPyObjects(poly, H, W))).astype(bool), poly
            else:
                m = blob()
                seg = rle(m) if rng.random() < 0.8 else {"size": [H, W], "counts": [int(c) for c in _counts(m)]}
            area = float(m.sum()) if rng.random() < 0.8 else float(rng.uniform(0, 12000))  # COCO reads the field
            box = coco.toBbox(rle(m, text=False)).tolist()
            anns.append(
                {"id": len(anns) + 1, "image_id": im["id"], "category_id": cats[rng.integers(n_cat)]["id"],
                 "segmentation": seg, "area": area, "iscrowd": int(rng.random() < crowd), "bbox": box}
            )  # fmt: skip
            masks.append(m)
        for _ in range(rng.integers(0, dets + 1)):
            if masks and rng.random() < 0.7:
                m = np.roll(masks[rng.integers(len(masks))], rng.integers(-3, 4), axis=int(rng.integers(2)))
            else:
                m = blob()
            score = float(rng.integers(0, 5) / 4) if ties else float(rng.random())
            d = {"image_id": im["id"], "category_id": cats[rng.integers(n_cat)]["id"], "segmentation": rle(m)}
            d["score"] = score
            if boxes:
                d["bbox"] = coco.toBbox(rle(m, text=False)).tolist()
            dts.append(d)
    return {"images": images, "annotations": anns, "categories": cats}, dts


def _counts(m: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts: column-major runs, starting with a (maybe empty) run of zeros."""
    flat = m.T.ravel().astype(int)
    change = np.flatnonzero(np.diff(np.r_[0, flat]) != 0)
    return np.diff(np.r_[0, change, flat.size]).tolist()


def reference(gt, dts, iou_type) -> COCOeval:
    """pycocotools on deep copies (loadRes edits its input); an empty result list goes in as an empty COCO."""
    with contextlib.redirect_stdout(io.StringIO()):
        G = COCO()
        G.dataset = copy.deepcopy(gt)
        G.createIndex()
        if dts:
            dd = copy.deepcopy(dts)
            for d in dd:
                if isinstance(d.get("segmentation"), dict):
                    d["segmentation"]["counts"] = d["segmentation"]["counts"].encode()
            D = G.loadRes(dd)
        else:
            D = COCO()
            D.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            D.createIndex()
        E = COCOeval(G, D, iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def assert_same(ours, E):
    assert ours.stats.shape == (12,)
    np.testing.assert_allclose(ours.stats, E.stats, rtol=0, atol=1e-9)
    for name in ("precision", "recall", "scores"):
        np.testing.assert_allclose(getattr(ours, name), E.eval[name], rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_pycocotools_on_random_scenes(seed, iou_type):
    gt, dts = scene(seed, ties=seed == 1, boxes=seed % 2 == 0)  # with boxes, loadRes takes areas from them
    assert_same(evaluate(gt, dts, iou_type), reference(gt, dts, iou_type))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["segm", "bbox"]), st.booleans())
def test_equals_pycocotools_hypothesis(seed, iou_type, ties):
    gt, dts = scene(seed, n_img=3, n_cat=2, size=(12, 15), dets=6, ties=ties, crowd=0.3)
    assert_same(evaluate(gt, dts, iou_type), reference(gt, dts, iou_type))


def test_max_dets_truncation_and_many_gts():
    """More than 100 detections in one (image, category), and cells with several gt counts (matching buckets)."""
    gt, dts = scene(5, n_img=3, n_cat=1, dets=150, crowd=0.2)
    for iou_type in ("segm", "bbox"):
        assert_same(evaluate(gt, dts, iou_type), reference(gt, dts, iou_type))


def test_per_category_equals_the_precision_slices_of_pycocotools():
    gt, dts = scene(6, n_cat=4)
    ours, E = evaluate(gt, dts), reference(gt, dts, "segm")
    for k, cat in enumerate(ours.cat_ids):
        p = E.eval["precision"][:, :, k, 0, -1]  # the AP per category of detectron2's COCOEvaluator
        want = np.mean(p[p > -1]) if (p > -1).any() else -1
        assert ours.per_category()[cat][0] == pytest.approx(want, abs=1e-12)
    assert list(ours.summary) == list(STAT_NAMES) and ours.summary["AP"] == ours.stats[0]


def test_edge_cases_equal_pycocotools():
    gt, dts = scene(7, n_cat=3)
    # an image with no gt at all (its detections are false positives), and a category with no detection
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 1]
    dts = [d for d in dts if d["category_id"] != 9]
    assert not any(a["image_id"] == 1 for a in gt["annotations"]) and any(d["image_id"] == 1 for d in dts)
    assert_same(evaluate(gt, dts), reference(gt, dts, "segm"))
    # no detections at all: every AP and AR is 0 (or -1 where there is no gt)
    ours = evaluate(gt, [])
    assert_same(ours, reference(gt, [], "segm"))
    assert set(ours.stats.tolist()) <= {0.0, -1.0}
    # every gt a crowd: nothing to find, every number -1
    for a in gt["annotations"]:
        a["iscrowd"] = 1
    ours = evaluate(gt, dts)
    assert_same(ours, reference(gt, dts, "segm"))
    assert (ours.stats == -1).all()


def test_perfect_detections_score_one():
    """Detections equal to the non-crowd gts (one per gt, areas equal to the masks) give AP = AR = 1."""
    gt, _ = scene(8, crowd=0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        G = COCO()
        G.dataset = copy.deepcopy(gt)
        G.createIndex()
    for a in gt["annotations"]:
        a["segmentation"] = rle(G.annToMask(a).astype(bool))
        a["area"] = float(coco.area(G.annToRLE(a)))
    dts = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
            "score": 0.5} for a in gt["annotations"]]  # fmt: skip
    s = evaluate(gt, dts).summary
    assert s["AP"] == s["AP50"] == s["AR100"] == 1.0


def test_box_only_detections_and_polygon_detections_in_segm():
    """A detection with only a box is evaluated as its box polygon (loadRes); a polygon detection as its mask."""
    gt, dts = scene(9)
    boxes = [{k: v for k, v in d.items() if k != "segmentation"} for d in dts]
    assert_same(evaluate(gt, boxes), reference(gt, boxes, "segm"))
    polys = [dict(d, segmentation=[[d["bbox"][0], d["bbox"][1], d["bbox"][0] + 5, d["bbox"][1] + 1, d["bbox"][0],
                                    d["bbox"][1] + 6]]) for d in dts]  # fmt: skip
    assert_same(evaluate(gt, polys), reference(gt, polys, "segm"))


def test_gt_id_zero_counts_as_matched():
    """pycocotools stores matches by gt id and reads id 0 as 'unmatched': masklab matches by position."""
    gt, dts = scene(10)
    ours = evaluate(gt, dts)
    for a in gt["annotations"]:
        a["id"] -= 1  # ids now start at 0
    assert_same(evaluate(gt, dts), reference(*scene(10), "segm"))
    assert np.array_equal(evaluate(gt, dts).stats, ours.stats)


def bad(gt, dts, match, iou_type="segm"):
    with pytest.raises(ValueError, match=match) as e:
        evaluate(gt, dts, iou_type)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line_value_errors():
    gt, dts = scene(11)
    g = copy.deepcopy(gt)
    del g["categories"]
    bad(g, dts, "gt has no 'categories'")
    g = copy.deepcopy(gt)
    del g["annotations"][2]["area"]
    bad(g, dts, "gt annotation 2 has no 'area'")
    bad(gt, [dict(dts[0], image_id=999)], "detection 0 has image_id 999, which is not in gt\\['images'\\]")
    bad(gt, [dict(dts[0], category_id=4)], "detection 0 has category_id 4, which is not in gt\\['categories'\\]")
    bad(gt, [{k: v for k, v in dts[0].items() if k != "score"}], "detection 0 has no 'score'")
    bad(gt, [dict(dts[0], score=float("nan"))], "detection 0 has score nan")
    bad(gt, [dict(dts[0], segmentation=[])], "detection 0 has an empty or unreadable segmentation")
    bad(gt, [dict(dts[0], segmentation=[[1, 2, 3, 4]])], "detection 0 polygon 0 has 2 points")
    bad(gt, [dict(dts[0], segmentation=[[1, 2, 3, 4, 5, 6], [1, 2, 3]])], "detection 0 polygon 1 has an odd number")
    bad(gt, [dict(dts[0], segmentation=rle(np.ones((5, 5), bool)))], "detection 0 has an RLE of size \\[5, 5\\]")
    bad(gt, [dict(dts[0], segmentation={"size": [30, 40], "counts": ""})], "detection 0: segmentation counts sum to 0")
    g = copy.deepcopy(gt)
    g["images"][0]["height"] = 0
    bad(g, dts, "gt image 1 has size 0x40")
    g = copy.deepcopy(gt)
    g["annotations"][0]["image_id"] = 2
    bad(g, dts, "gt annotation 0 has image_id 2, which is not in gt")
    g = copy.deepcopy(gt)
    g["images"].append(dict(g["images"][0]))
    bad(g, dts, "image id 1 appears more than once")
    bad(gt, dts[0], "dt must be a list of detections")
    bad(gt, [dict(dts[0], bbox=[1, 2, 3])], "detection 0 has bbox \\[1, 2, 3\\]", "bbox")
    bad(gt, dts, "iou_type must be 'segm' or 'bbox'", "keypoints")
