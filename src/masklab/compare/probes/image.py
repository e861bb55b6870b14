"""Image probes on scikit-learn's digits (the train split's images fit the probe, the 450 test images score it).

- ``digits-linear`` / ``digits-knn``: logistic regression / cosine k-NN (k = 10) on the mean-pooled encoder
  features (MAE's and DINO's evaluations).
- ``digits-seg``: a per-patch segmentation probe. A canvas holds four digits in its quadrants, each at half the
  image size; every patch is labelled with the class of the digit whose ink it covers, or background (11
  classes). A logistic regression on the frozen per-patch encoder features predicts the label; the metric is the
  mean IoU over the 11 classes on canvases of test digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from masklab.compare.probes.base import PROBE, Probe

__all__ = ["digit_canvases"]

INK = 0.25  # a pixel above this (of 1) is ink
SEG_PER_CLASS = 200  # training patches per class of the segmentation probe


def _encoder_patches(model, x: torch.Tensor) -> torch.Tensor:
    """[B, N, D] per-patch encoder outputs with every patch visible."""
    from masklab.models.vit_mae import patchify

    with torch.no_grad():
        return model.encoder(patchify(x, model.config.patch_size)).float()


def _digit_features(folder: Path, recipe):
    from masklab.data.digits import N_TRAIN, digits_images
    from masklab.train import checkpoint

    model = checkpoint.load(folder).model.eval()
    x, y = digits_images(recipe.image_size)
    f = _encoder_patches(model, x).mean(1).numpy()
    return f[:N_TRAIN], y[:N_TRAIN].numpy(), f[N_TRAIN:], y[N_TRAIN:].numpy()


def digits_linear(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    return {"digits_linear_acc": 100.0 * linear_probe(*_digit_features(folder, recipe))}


def digits_knn(folder: Path, recipe, k: int = 10) -> dict[str, float]:
    from sklearn.neighbors import KNeighborsClassifier

    ftr, ytr, fte, yte = _digit_features(folder, recipe)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(ftr, ytr)
    return {"digits_knn_acc": 100.0 * float(knn.score(fte, yte))}


def digit_canvases(split: str, n: int, image_size: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(canvases [n, 1, S, S], patch labels [n, (S / patch)^2]): four digits of ``split`` ('train' or 'test') per
    canvas, drawn in a fixed order; a patch's label is 1 + the class of the digit whose ink it holds, else 0."""
    from masklab.data.digits import N_TRAIN, digits_images

    half = image_size // 2
    if image_size % 2 or half % patch:
        raise ValueError(f"digits-seg needs an image size of two halves of whole patches, got {image_size}/{patch}")
    x, y = digits_images(half)
    x, y = (x[:N_TRAIN], y[:N_TRAIN]) if split == "train" else (x[N_TRAIN:], y[N_TRAIN:])
    pick = torch.from_numpy(np.random.default_rng(0 if split == "train" else 1).choice(len(x), (n, 4)))
    canvas = torch.zeros(n, 1, image_size, image_size)
    classes = torch.zeros(n, 1, image_size, image_size, dtype=torch.long)
    for q, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        tile = x[pick[:, q]]  # (n, 1, half, half)
        canvas[..., r * half : (r + 1) * half, c * half : (c + 1) * half] = tile
        label = torch.where(tile > INK, 1 + y[pick[:, q]].view(n, 1, 1, 1), 0)
        classes[..., r * half : (r + 1) * half, c * half : (c + 1) * half] = label
    ink = F.max_pool2d((classes > 0).float(), patch)  # (n, 1, G, G): the patch holds ink
    owner = F.max_pool2d(classes.float(), patch)  # one digit per quadrant, so the max is its class
    return canvas, (ink * owner).long().flatten(1)


def _mean_iou(pred: np.ndarray, gold: np.ndarray, classes: int) -> float:
    ious = []
    for c in range(classes):
        union = np.sum((pred == c) | (gold == c))
        if union:
            ious.append(np.sum((pred == c) & (gold == c)) / union)
    return float(np.mean(ious))


def digits_seg(folder: Path, recipe) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from masklab.train import checkpoint

    model = checkpoint.load(folder).model.eval()
    p = model.config.patch_size
    (xtr, ytr), (xte, yte) = (digit_canvases(s, n, recipe.image_size, p) for s, n in (("train", 200), ("test", 100)))
    ftr, fte = (_encoder_patches(model, x).flatten(0, 1).numpy() for x in (xtr, xte))
    ytr = ytr.flatten().numpy()
    rng = np.random.default_rng(0)  # at most SEG_PER_CLASS training patches per class: background dominates
    keep = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:SEG_PER_CLASS] for c in np.unique(ytr)])
    scaler = StandardScaler().fit(ftr[keep])
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(ftr[keep]), ytr[keep])
    pred = clf.predict(scaler.transform(fte))
    return {"digits_seg_miou": 100.0 * _mean_iou(pred, yte.flatten().numpy(), 11)}


for name, summary, probe in [
    ("digits-linear", "images: logistic regression on frozen mean-pooled encoder features, digits test",
     Probe("image", {"digits_linear_acc": True}, digits_linear)),
    ("digits-knn", "images: cosine 10-NN on frozen mean-pooled encoder features, digits test split",
     Probe("image", {"digits_knn_acc": True}, digits_knn)),
    ("digits-seg", "images: per-patch linear segmentation of 4-digit canvases (11 classes), mean IoU",
     Probe("image", {"digits_seg_miou": True}, digits_seg)),
]:  # fmt: skip
    PROBE.register(name, summary, probe)
