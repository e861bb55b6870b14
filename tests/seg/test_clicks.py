"""Click simulation against scipy.ndimage (oracle for distance transform and labels) and a toy segmenter."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data

from masklab.seg.clicks import Click, connected_components, distance_transform, next_click, noc, simulate


@pytest.mark.parametrize("seed", range(6))
def test_components_and_distances_match_scipy(seed):
    rng = np.random.default_rng(seed)
    m = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.random()
    lab, n = connected_components(m)
    ref, rn = ndimage.label(m)
    assert n == rn and np.array_equal(lab.numpy(), ref)
    want = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # image border counts as outside
    assert np.allclose(distance_transform(m).numpy(), want)


def test_real_mask_components_match_scipy():
    m = data.coins()[::2, ::2] > 100
    lab, n = connected_components(m)
    ref, rn = ndimage.label(m)
    assert n == rn and np.array_equal(lab.numpy(), ref)


def test_first_click_is_the_object_center():
    gt = np.zeros((21, 31), bool)
    gt[5:16, 10:21] = True  # 11x11 square centered at (10, 15)
    c = next_click(np.zeros_like(gt), gt)
    assert c == Click(10, 15, True)


def test_click_goes_to_the_largest_error_region():
    gt = np.zeros((40, 40), bool)
    gt[2:8, 2:8] = True  # small missed object (36 px)
    pred = np.zeros_like(gt)
    pred[20:35, 20:35] = True  # large false positive (225 px)
    c = next_click(pred, gt)
    assert not c.positive and (c.y, c.x) == (27, 27)
    # a thin long error beats a compact one in area; "deepest" picks the compact one instead
    gt2 = np.zeros((40, 40), bool)
    gt2[30:32, 0:40] = True  # 80 px, depth 1
    gt2[2:9, 2:9] = True  # 49 px, depth 4
    assert next_click(np.zeros_like(gt2), gt2).y in (30, 31)
    assert next_click(np.zeros_like(gt2), gt2, strategy="deepest") == Click(5, 5, True)
    assert next_click(gt2, gt2) is None


def test_clicked_pixels_are_not_clicked_again():
    gt = np.zeros((9, 9), bool)
    gt[2:7, 2:7] = True
    clicked = np.zeros_like(gt)
    clicked[4, 4] = True
    c = next_click(np.zeros_like(gt), gt, clicked)
    assert (c.y, c.x) != (4, 4) and gt[c.y, c.x]


def disk_segmenter(radius):
    """Toy segmenter: union of disks around positive clicks minus disks around negative clicks."""

    def seg(clicks, prev):
        yy, xx = np.mgrid[:48, :48]
        out = np.zeros((48, 48), bool)
        for c in clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= radius**2
            out = out | disk if c.positive else out & ~disk
        return torch.from_numpy(out)

    return seg


def test_noc_on_a_toy_segmenter():
    gt = np.zeros((48, 48), bool)
    yy, xx = np.mgrid[:48, :48]
    gt[(yy - 24) ** 2 + (xx - 24) ** 2 <= 100] = True  # disk of radius 10
    exact = simulate(disk_segmenter(10), gt)
    assert exact.ious[0] == 1.0 and exact.noc(0.85) == 1 and exact.noc(0.90) == 1
    small = simulate(disk_segmenter(4), gt, max_clicks=20)
    assert small.clicks[0] == Click(24, 24, True)  # first click: the object's center
    assert small.ious[0] == pytest.approx(49 / 317)  # a radius-4 disk has 49 px, the radius-10 disk 317
    assert 1 < small.noc(0.85) <= small.noc(0.90) <= 20
    never = simulate(lambda clicks, prev: torch.zeros(48, 48, dtype=torch.bool), gt, max_clicks=5)
    assert never.noc(0.85) == 5 and len(never.clicks) == 5


def test_noc_rule_and_errors():
    assert noc([0.5, 0.86, 0.91], 0.85) == 2 and noc([0.5, 0.86, 0.91], 0.90) == 3
    assert noc([0.5, 0.6], 0.9, max_clicks=20) == 20
    with pytest.raises(ValueError, match="empty"):
        simulate(disk_segmenter(3), np.zeros((48, 48), bool))
    with pytest.raises(ValueError, match="strategy"):
        next_click(np.zeros((3, 3)), np.ones((3, 3)), strategy="center")
