"""Referring-segmentation metrics on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from masklab.seg.metrics import ciou, giou, intersection_union, iou, precision_at, summarize


def batch():
    p = torch.zeros(4, 4, 4, dtype=torch.bool)
    t = torch.zeros(4, 4, 4, dtype=torch.bool)
    p[0, :2] = True  # 8 px
    t[0, :1] = True  # 4 px inside: IoU 4/8
    p[1, 0, 0] = True  # target empty, prediction not: IoU 0
    # sample 2: both empty -> union 0 -> LISA rule
    p[3] = True
    t[3, :3] = True  # 12/16
    return p, t


def test_hand_computed_values():
    p, t = batch()
    inter, union = intersection_union(p, t)
    assert inter.tolist() == [4, 0, 0, 12] and union.tolist() == [8, 1, 0, 16]
    assert iou(p, t).tolist() == [0.5, 0.0, 1.0, 0.75]
    assert giou(p, t) == pytest.approx((0.5 + 0 + 1 + 0.75) / 4)
    assert ciou(p, t) == pytest.approx(16 / 25)
    assert precision_at(iou(p, t), (0.5, 0.75, 0.9)) == {0.5: 0.75, 0.75: 0.5, 0.9: 0.25}


def test_empty_rule_can_exclude():
    p, t = batch()
    assert giou(p, t, empty=math.nan) == pytest.approx((0.5 + 0 + 0.75) / 3)
    assert precision_at(iou(p, t, empty=math.nan), (0.5,)) == {0.5: pytest.approx(2 / 3)}
    assert ciou(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)) == 1.0


def test_summary_from_counts_equals_direct_and_numpy_inputs_work():
    p, t = batch()
    s = summarize(*intersection_union(p, t))
    assert s["gIoU"] == pytest.approx(giou(p, t)) and s["cIoU"] == pytest.approx(ciou(p, t))
    assert s["Pr@0.5"] == 0.75
    assert iou(p[0].numpy(), t[0].numpy().astype(np.uint8)).tolist() == [0.5]


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ"):
        iou(torch.zeros(2, 3, 3), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="intersection <= union"):
        summarize([3], [2])
