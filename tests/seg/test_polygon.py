"""masklab.seg.polygon against pycocotools' frPyObjects (the C rleFrPoly), byte for byte."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco

from masklab.seg.polygon import box_polygon, check_polygon, polygon_runs, polygons_to_rle


def ref(polys, h, w) -> list[str]:
    return [r["counts"].decode() for r in coco.frPyObjects(polys, h, w)]


def random_polygons(rng, n, h, w, kind):
    out = []
    for _ in range(n):
        k = int(rng.integers(3, 14))
        if kind == "float":
            p = rng.uniform(-5, max(h, w) + 5, 2 * k)
        elif kind == "int":  # vertices on pixel centres: the rounding ties of the 5x grid
            p = rng.integers(-2, max(h, w) + 2, 2 * k).astype(float)
        elif kind == "half":
            p = np.round(rng.uniform(0, max(h, w), 2 * k) * 2) / 2
        else:  # a repeated vertex: a zero-length edge
            p = rng.uniform(0, max(h, w), 2 * k)
            p[2:4] = p[0:2]
        out.append(p.tolist())
    return out


@pytest.mark.parametrize("kind", ["float", "int", "half", "repeat"])
def test_many_polygons_at_once_equal_frpyobjects(kind):
    rng = np.random.default_rng(["float", "int", "half", "repeat"].index(kind))
    for _ in range(30):
        h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
        polys = random_polygons(rng, 8, h, w, kind)
        assert [r["counts"] for r in polygons_to_rle(polys, h, w)] == ref(polys, h, w)


def test_large_images_and_per_polygon_sizes():
    rng = np.random.default_rng(7)
    sizes = [(int(rng.integers(300, 2500)), int(rng.integers(300, 2500))) for _ in range(6)]
    polys = [rng.uniform(-40, max(s) + 40, 2 * int(rng.integers(3, 40))).tolist() for s in sizes]
    runs = polygon_runs(polys, [s[0] for s in sizes], [s[1] for s in sizes])
    want = [ref([p], *s)[0] for p, s in zip(polys, sizes, strict=True)]
    assert [r["counts"] for r in runs.to_rles()] == want
    assert [r["size"] for r in runs.to_rles()] == [list(s) for s in sizes]


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.lists(st.lists(st.floats(-8, 48, allow_nan=False), min_size=6, max_size=20), min_size=1, max_size=3),
)
def test_hypothesis_polygons_equal_frpyobjects(h, w, polys):
    polys = [p[: len(p) // 2 * 2] for p in polys]
    assert [r["counts"] for r in polygons_to_rle(polys, h, w)] == ref(polys, h, w)


def test_a_box_polygon_is_what_coco_draws_for_a_box():
    boxes = [[3.2, 4.7, 10.1, 5.5], [0, 0, 20, 15], [-3, 5, 8, 30]]
    drawn = [r["counts"] for r in polygons_to_rle([box_polygon(b) for b in boxes], 15, 20)]
    assert drawn == ref(np.array(boxes), 15, 20)  # frPyObjects of an [N, 4] array: rleFrBbox


def test_four_values_are_a_two_point_polygon_not_a_box():
    """pycocotools sends [[x1, y1, x2, y2]] to its box path (cocoapi issue #369), which fails on a list, and
    reads the same values as a box [x, y, w, h] when they come as an array; masklab reads them as a polygon of 2
    points and says so."""
    poly = [2.0, 3.0, 9.0, 8.0]
    with pytest.raises(TypeError, match="'bb' has incorrect type"):
        coco.frPyObjects([poly], 20, 20)
    assert int(coco.area(coco.frPyObjects(np.array([poly]), 20, 20))[0]) == 9 * 8  # a 9x8 box
    with pytest.raises(ValueError, match="polygon 0 has 2 points; a polygon needs at least 3"):
        polygons_to_rle([poly], 20, 20)


@pytest.mark.parametrize(
    "poly,match",
    [
        ([1, 2, 3, 4, 5], "odd number of values"),
        ([1, 2, 3, 4], "2 points"),
        ([], "0 points"),
        ([0, 0, 5, 0, float("nan"), 5], "not finite"),
        ([0, 0, "a", 0, 5, 5], "numbers only"),
        ("0 0 5 0 5 5", "list of numbers"),
    ],
)
def test_bad_polygons_are_one_line_value_errors(poly, match):
    with pytest.raises(ValueError, match=match):
        polygons_to_rle([[0, 0, 4, 0, 4, 4], poly], 10, 10)
    with pytest.raises(ValueError, match=match):
        check_polygon(poly)


def test_bad_sizes():
    with pytest.raises(ValueError, match="h must be a positive int"):
        polygons_to_rle([[0, 0, 4, 0, 4, 4]], 0, 10)
    with pytest.raises(ValueError, match="w must be a positive int"):
        polygons_to_rle([[0, 0, 4, 0, 4, 4]], 10, 2.5)
