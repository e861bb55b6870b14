"""MAYOR (masklab.seg.mayor): the dense world is a keyed pure function with disjoint instances and tight boxes and
is dense (boxes hold other instances); RoIAlign equals bilinear sampling at the bin centres (and an exact crop on
pixel-aligned boxes); pasting inverts cropping; instance-aware targets hold only the RoI's own instance."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed
from masklab.objectives.mayor import MayorObjective
from masklab.seg.mayor import DenseLayout, DenseRows, RoIMaskNet, dense_scene, jitter_boxes, paste_masks, roi_align


def test_dense_scenes_are_keyed_disjoint_tight_and_dense():
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a, b = dense_scene(0, 5), dense_scene(0, 5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances)
    assert torch.equal(state, torch.random.get_rng_state()) and np.array_equal(np_state, np.random.get_state()[1])
    crowded = []
    for i in range(8):
        s = dense_scene(1, i)
        masks = s.masks
        assert masks.sum(0).max() == 1 and masks.reshape(len(masks), -1).sum(1).min() >= 8
        for k, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            assert list(s.boxes[k]) == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            x, y, w, h = s.boxes[k]
            box = s.instances[y : y + h, x : x + w]
            crowded.append(bool(((box > 0) & (box != k + 1)).any()))
    assert np.mean(crowded) > 0.4  # most boxes also hold pixels of their neighbours


def _bilinear(f: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of f (h, w) at continuous (y, x) in pixel-index units, 0 outside (grid_sample's zeros)."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    out = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < f.shape[0] and 0 <= xx < f.shape[1]:
                out += wy * wx * f[yy, xx]
    return out


@settings(max_examples=25, deadline=None)
@given(st.floats(0, 50), st.floats(0, 50), st.floats(2, 14), st.floats(2, 14), st.sampled_from([1, 2, 4]))
def test_roi_align_samples_bin_centres(x0, y0, w, h, stride):
    torch.manual_seed(0)
    S, out = 64, 4
    f = torch.rand(1, 1, S // stride, S // stride)
    got = roi_align(f, torch.tensor([[x0, y0, x0 + w, y0 + h]]), torch.tensor([0]), out, S)[0, 0]
    for i in range(out):
        for j in range(out):
            # detectron2's aligned RoIAlign, one sample per bin: image point -> feature index p / stride - 0.5
            py, px = y0 + (i + 0.5) * h / out, x0 + (j + 0.5) * w / out
            want = _bilinear(f[0, 0].numpy(), py / stride - 0.5, px / stride - 0.5)
            assert abs(float(got[i, j]) - want) < 1e-5


def test_crop_then_paste_on_pixel_aligned_boxes_is_exact():
    s = dense_scene(2, 0)
    masks = torch.from_numpy(s.masks).float()
    for k, (x, y, w, h) in enumerate(s.boxes.tolist()):
        n = max(w, h)
        x, y = min(x, 64 - n), min(y, 64 - n)  # a square pixel-aligned box around the instance
        box = torch.tensor([[x, y, x + n, y + n]], dtype=torch.float32)
        crop = roi_align(masks[k][None, None], box, torch.tensor([0]), n, 64)[0, 0]  # one bin per pixel
        assert torch.equal(crop, masks[k, y : y + n, x : x + n])
        assert torch.allclose(paste_masks(crop[None], box, 64)[0], masks[k], atol=1e-5)  # float rounding of the grid


def test_jitter_keeps_proposals_near_their_boxes():
    s = dense_scene(3, 1)
    boxes = torch.from_numpy(s.boxes)
    keys = keyed.eval_keys(0, torch.arange(len(boxes)))
    j = jitter_boxes(boxes, keys, 64)
    assert torch.equal(j, jitter_boxes(boxes, keys, 64)) and (j >= 0).all() and (j <= 64).all()
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    assert ((j[:, 0] + j[:, 2]) / 2 - cx).abs().le(0.15 * boxes[:, 2] + 1e-4).all()
    assert ((j[:, 1] + j[:, 3]) / 2 - cy).abs().le(0.15 * boxes[:, 3] + 1e-4).all()


def test_instance_targets_hold_only_their_instance_and_plain_targets_all_foreground():
    layout = DenseLayout(64)
    rows = DenseRows(4, 3, layout)[:3]
    keys = keyed.train_keys(0, 0, torch.arange(3))
    b = layout.unpack(rows)
    torch.manual_seed(0)
    model = RoIMaskNet("mlp")
    inst, plain = MayorObjective(model, layout, "instance", rois=64), MayorObjective(model, layout, "plain", rois=64)
    image, ids, rois = inst.proposals(b, keys, None)
    t_inst, t_plain = inst.target_masks(b, image, ids, rois), plain.target_masks(b, image, ids, rois)
    assert len(ids) == int((b["boxes"][..., 2] > 0).sum())  # every instance once
    assert (t_inst <= t_plain).all() and (t_plain > t_inst).any()  # plain adds the neighbours' pixels
    own = roi_align((b["instances"][image] == ids[:, None, None]).float()[:, None], rois, torch.arange(len(ids)),
                    model.out, 64)[:, 0]  # fmt: skip
    assert torch.equal(t_inst, (own >= 0.5).float())
    sampled, _, _ = inst.proposals(b, keys, 5)
    assert torch.bincount(sampled, minlength=3).max() <= 5
