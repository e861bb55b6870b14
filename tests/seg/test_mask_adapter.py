"""Mask-Adapter (masklab.seg.mask_adapter): signed distances against scipy's exact distance transform, proposals at
the IoU asked for (IoU measured by masklab.seg.metrics), the adapter's pooling equal to the reference's lines, and
the mask-consistency loss as the reference writes it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from masklab.corrupt import keyed
from masklab.data.canvases import canvas
from masklab.objectives.mask_adapter import MATCH_IOU, MaskAdapterObjective
from masklab.seg.mask_adapter import (
    CLIP,
    MASK_PRIOR,
    MAX_AMPLITUDE,
    MaskClassifier,
    MaskLayout,
    MaskRows,
    perturb,
    signed_distance,
    smooth_noise,
)
from masklab.seg.metrics import iou
from masklab.seg.pooling import activation_pool, mask_pool


def _masks(n=6):
    return [m for i in range(n) for m in canvas(4, i, 64).masks]


def test_signed_distance_is_the_exact_distance_on_each_side():
    for m in _masks(3):
        d = signed_distance(m).numpy()
        assert np.array_equal(d > 0, m)
        inside = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # the border ends the object
        outside = ndimage.distance_transform_edt(~m)  # the image goes on beyond its border
        assert np.allclose(d[m], inside[m], atol=1e-5)
        assert np.allclose(d[~m], -np.minimum(outside[~m], CLIP), atol=1e-5)


def test_proposals_have_the_iou_asked_for():
    masks = _masks(6)
    sdf = torch.stack([signed_distance(m) for m in masks])
    n = len(masks)
    keys = keyed.eval_keys(0, torch.arange(n))
    noise = smooth_noise(keys, 64)
    assert torch.allclose(noise.mean((1, 2)), torch.zeros(n), atol=1e-5)
    assert torch.allclose(noise.flatten(1).std(1), torch.ones(n), atol=1e-4)
    same, ones = perturb(sdf, torch.ones(n), noise)
    assert torch.equal(same, sdf > 0) and torch.equal(ones, torch.ones(n))  # amplitude 0: the mask itself
    for t in (0.55, 0.75, 0.9):
        out, ious = perturb(sdf, torch.full((n,), t), noise)
        measured = iou(out, torch.from_numpy(np.stack(masks)))
        assert torch.allclose(ious.double(), measured, atol=1e-6)
        # the nearest IoU over amplitudes: no amplitude on a fine grid comes closer to the target
        for k in range(n):
            cand = [float(iou(sdf[k] + a * noise[k] > 0, masks[k])[0]) for a in np.linspace(0, MAX_AMPLITUDE, 97)]
            assert abs(ious[k] - t) <= min(abs(c - t) for c in cand) + 1e-6
        assert float((ious - t).abs().median()) < 0.02


def _reference_pooling(features, maps, K):
    """mask_adapter.py: softmax(logsigmoid(maps)) over positions, bmm with the features, mean over the K maps."""
    B, C = features.shape[:2]
    N = maps.size(1)
    w = F.softmax(F.logsigmoid(maps).view(B, N, -1), dim=-1)
    pooled = torch.bmm(w, features.view(B, C, -1).permute(0, 2, 1))
    return pooled.reshape(B, N // K, K, -1).mean(dim=-2)


@pytest.mark.parametrize("pool", ["adapter", "mask"])
def test_embeddings_pool_as_the_reference(pool):
    torch.manual_seed(0)
    model = MaskClassifier(14, pool, width=16, maps=4).eval()
    pixels = torch.rand(2, 3, 64, 64)
    masks = torch.rand(2, 3, 64, 64) > 0.7
    with torch.no_grad():
        f = model.features(pixels)
        got = model.embed(f, masks)
        if pool == "adapter":
            maps = model.adapter(f, masks).flatten(1, 2)  # (B, Q K, h, w), masks major as in the reference
            pooled = _reference_pooling(f, maps, 4)
        else:  # FC-CLIP: the mean of the features under the (bilinearly resized) mask
            m = F.interpolate(masks.float(), size=f.shape[-2:], mode="bilinear", align_corners=False)
            pooled = torch.einsum("bqhw,bchw->bqc", m, f) / (m.sum((-1, -2))[..., None] + 1e-6)
    assert torch.allclose(got, F.normalize(model.proj(pooled), dim=-1), atol=1e-5)


def test_consistency_loss_pulls_matched_proposals_only():
    torch.manual_seed(0)
    layout = MaskLayout(64, slots=5)
    rows = MaskRows(6, 4, layout)[:4]
    keys = keyed.train_keys(0, 0, torch.arange(4))
    objective = MaskAdapterObjective(MaskClassifier(14, "adapter", 16, 4), layout, consistency=5.0)
    _, metrics = objective(rows, keys)
    b = layout.unpack(rows)
    proposal, ious = objective.proposals(b["sdf"], keys)
    with torch.no_grad():
        f = objective.model.features(b["pixels"])
        e_gt, e_p = objective.model.embed(f, b["sdf"] > 0), objective.model.embed(f, proposal)
    matched = (b["labels"] >= 0) & (ious > MATCH_IOU)
    want = (1 - F.cosine_similarity(e_p, e_gt, dim=-1))[matched].mean()  # the reference's 1 - cos(...).mean()
    assert matched.any() and not matched.all()
    assert torch.allclose(metrics["consistency"], want, atol=1e-5)


def test_ground_truth_warmup_then_mixed_masks():
    """The reference's two stages: during the first gt_warmup optimizer steps the loss is the CE of the
    ground-truth masks alone (no proposal, no consistency); after them, proposals and consistency join."""
    torch.manual_seed(0)
    layout = MaskLayout(64, slots=5)
    rows = MaskRows(6, 4, layout)[:4]
    keys = keyed.train_keys(0, 0, torch.arange(4))
    objective = MaskAdapterObjective(MaskClassifier(14, "adapter", 16, 4), layout, consistency=5.0, gt_warmup=2)
    b = layout.unpack(rows)
    with torch.no_grad():
        logits = objective.model.logits(objective.model.embed(objective.model.features(b["pixels"]), b["sdf"] > 0))
    gt_ce = F.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(), ignore_index=-1)
    loss, _ = objective(rows, keys, batch_size=4)  # step 1
    assert torch.allclose(loss, gt_ce, atol=1e-5)
    loss, _ = objective(rows[:2], keys[:2], batch_size=4)  # step 2 in two micro-batches: still warm
    assert torch.allclose(loss, F.cross_entropy(logits[:2].flatten(0, 1), b["labels"][:2].flatten(), ignore_index=-1))
    objective(rows[2:], keys[2:], batch_size=4)
    assert torch.allclose(objective.updates, torch.tensor(2.0, dtype=torch.float64))
    loss, metrics = objective(rows, keys, batch_size=4)  # step 3: mixed masks and consistency
    assert metrics["consistency"] > 0 and torch.allclose(loss, metrics["ce"] + 5.0 * metrics["consistency"])
    assert not torch.allclose(metrics["ce"], gt_ce, atol=1e-3)  # proposals change the CE


def test_adapter_starts_as_mask_pooling():
    """With its learnt maps at zero, the adapter pools with softmax(logsigmoid(MASK_PRIOR * (m - 1))) weights: each
    object's embedding is nearer its mask-pooled feature than the image's mean feature (the embedding follows the
    mask)."""
    torch.manual_seed(0)
    model = MaskClassifier(14, "adapter", width=16, maps=4).eval()
    torch.nn.init.zeros_(model.adapter.to_maps.weight)
    torch.nn.init.zeros_(model.adapter.to_maps.bias)
    c = canvas(4, 0, 64)
    pixels = torch.from_numpy(c.image).permute(2, 0, 1)[None].float()
    masks = torch.from_numpy(c.masks)[None]
    with torch.no_grad():
        f = model.features(pixels)
        pooled = activation_pool(f, F.logsigmoid(model.adapter(f, masks)))  # (1, Q, C)
        m = F.interpolate(masks.float(), size=f.shape[-2:], mode="bilinear", align_corners=False)
        weights = F.logsigmoid(MASK_PRIOR * (m - 1)).flatten(2).softmax(-1)  # the prior alone
        want = torch.einsum("bqn,bcn->bqc", weights, f.flatten(2))
        masked, mean = mask_pool(f, masks), f.mean((2, 3))[:, None]
    assert torch.allclose(pooled, want, atol=1e-5)
    assert ((pooled - masked).norm(dim=-1) < (pooled - mean).norm(dim=-1)).all()
