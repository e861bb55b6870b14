"""Mask-Adapter on the canvas world: classifying masks by pooling under them (FC-CLIP) or through semantic
activation maps (Mask-Adapter), and proposal masks of a chosen IoU to train and test them on.

Mask-Adapter (Li et al., CVPR 2025, Sec. 3.2-3.3; reference ``mask_adapter/mask_adapter.py`` and
``fcclip/fcclip.py`` of github.com/hustvl/MaskAdapter) replaces mask pooling by an adapter that turns (features,
mask) into K = 16 activation maps; each map pools the features with ``softmax(logsigmoid(map))`` over positions and
the K pooled vectors are averaged (``maps_for_pooling = F.softmax(F.logsigmoid(...))`` in the reference). It is
trained with the classification cross-entropy on ground-truth masks and on predicted masks, plus the
**mask-consistency loss**: a predicted mask matched to a ground-truth mask at IoU > 0.7 should give the same
embedding, ``1 - cos(e(predicted), e(ground truth).detach())``, weight 5 (``cosine_similarity_loss``,
``COS_WEIGHT = 5.0``, ``IOU_THRESHOLD = 0.7``).

The canvas stand-ins: a small convolutional backbone (16 x 16 features of width 64) trained with the classifier
instead of a frozen CLIP, class embeddings learnt with a CLIP-style cosine classifier (learnt logit scale) instead
of CLIP's text embeddings, :class:`Adapter` (compact, like :class:`masklab.seg.pooling.MaskAdapter`) as the
adapter, and proposal masks made from the ground truth at a chosen IoU (:func:`perturb`) instead of a mask
generator's predictions.

Proposals. A mask is its signed distance map ``d`` (positive inside, clipped at ``-CLIP`` outside, the image border
being far background); a proposal is ``d + a * n > 0`` with ``n`` a smooth keyed noise field (a uniform 8 x 8 grid,
bicubic to the image, unit standard deviation) and the amplitude ``a`` (pixels) the one whose IoU is nearest the
target (found exactly from each pixel's flip amplitude, :func:`perturb`): ``a = 0`` gives the mask itself; larger
``a`` roughens the border, cuts parts off and adds blobs nearby, as imperfect proposals do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import keyed
from masklab.data.rows import LazyRows, split_rows, unpack_pixels
from masklab.seg.clicks import distance_transform
from masklab.seg.nets import cell_features, conv_block
from masklab.seg.pooling import activation_pool, mask_pool

__all__ = ["signed_distance", "smooth_noise", "perturb", "Adapter", "MaskClassifier", "MaskLayout", "MaskRows", "POOLS"]

CLIP = 16.0  # signed distances below -CLIP pixels are clipped (no proposal reaches that far)
MAX_AMPLITUDE = 24.0  # the largest noise amplitude (pixels) a proposal may take
MASK_PRIOR = 8.0  # the adapter's maps start at 0 on the mask, -8 off it: its pooling starts as mask pooling
NOISE_CELLS = 8  # the noise field is an 8 x 8 grid of keyed uniforms, upsampled
STREAM_NOISE, STREAM_IOU = 0x3A0A, 0x3A0B  # keyed streams: proposal noise, training target IoU
POOLS = ("mask", "adapter")


def signed_distance(mask) -> torch.Tensor:
    """Float32 [H, W]: distance to the background inside the mask (>= 1), minus the distance to the mask outside
    (<= -1), clipped at ``-CLIP``; the image border does not count as mask or background (the outside of the image
    is background)."""
    m = torch.as_tensor(np.asarray(mask)) != 0
    if m.dim() != 2:
        raise ValueError(f"mask must be [H, W], got shape {tuple(m.shape)}")
    inside = distance_transform(m)  # the border counts as outside: the object ends there
    pad = int(CLIP)
    out = ~F.pad(m[None, None].float(), (pad, pad, pad, pad))[0, 0].bool()  # padded background
    outside = distance_transform(out)[pad:-pad, pad:-pad]
    outside = torch.where(m.any(), outside, torch.full_like(outside, CLIP))
    return (inside - outside).clamp(min=-CLIP).float()


def smooth_noise(keys: torch.Tensor, size: int, stream: int = STREAM_NOISE) -> torch.Tensor:
    """(N, size, size) float32 fields, one per key: a keyed uniform NOISE_CELLS x NOISE_CELLS grid, bicubic to the
    image and standardized (mean 0, std 1 per field)."""
    u = keyed.uniform(keys, NOISE_CELLS * NOISE_CELLS, stream).view(-1, 1, NOISE_CELLS, NOISE_CELLS)
    n = F.interpolate(u, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    n = n - n.mean((1, 2), keepdim=True)
    return n / n.flatten(1).std(1).clamp(min=1e-6)[:, None, None]


def perturb(sdf: torch.Tensor, target: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposals of each mask at the IoU nearest ``target``: (bool [N, H, W], their IoU float32 [N]).

    sdf (N, H, W) signed distances (:func:`signed_distance`), target (N,) IoUs, noise (N, H, W) fields
    (:func:`smooth_noise`). The proposal at amplitude ``a`` is ``sdf + a * noise > 0``: an object pixel leaves it
    once ``a > sdf / -noise`` (where noise < 0), a background pixel joins once ``a > -sdf / noise`` (where noise
    > 0). Sorting these flip amplitudes gives the IoU at every amplitude exactly, ``(G - left) / (G + joined)``;
    the amplitude taken is the midpoint of the step nearest the target (ties: the smallest), at most
    ``MAX_AMPLITUDE``. An empty mask stays empty."""
    gt = sdf > 0
    flat_sdf, flat_n, inside = sdf.flatten(1), noise.flatten(1), gt.flatten(1)
    inf = torch.full_like(flat_sdf, float("inf"))
    leave = torch.where(inside & (flat_n < 0), flat_sdf / -flat_n.clamp(max=-1e-12), inf)
    join = torch.where(~inside & (flat_n > 0), -flat_sdf / flat_n.clamp(min=1e-12), inf)
    flips, order = torch.where(inside, leave, join).sort(1)  # (N, P)
    is_in = inside.gather(1, order)
    G = inside.sum(1, keepdim=True).float()
    left, joined = is_in.cumsum(1).float(), (~is_in).cumsum(1).float()  # after the first k + 1 flips
    step_iou = torch.cat([torch.ones_like(G), (G - left) / (G + joined).clamp(min=1)], 1)  # (N, P + 1)
    nxt = torch.cat([flips, inf[:, :1]], 1)  # the flip that ends each step
    start = torch.cat([torch.zeros_like(G), flips], 1)
    usable = (nxt > start) & (start <= MAX_AMPLITUDE)  # a step of positive width within reach
    usable[:, 0] = True  # amplitude 0: the mask itself
    cost = torch.where(usable, (step_iou - target[:, None].to(sdf.dtype)).abs(), inf[:, :1])
    k = cost.argmin(1)  # the first minimum: the smallest amplitude
    rows = torch.arange(len(sdf), device=sdf.device)
    a = torch.where(k == 0, 0.0, (start[rows, k] + nxt[rows, k].clamp(max=2 * MAX_AMPLITUDE)) / 2)
    out = (sdf + a[:, None, None] * noise) > 0
    inter, union = (out & gt).flatten(1).sum(1), (out | gt).flatten(1).sum(1)
    return out, torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter, dtype=torch.float32)).float()


class Adapter(nn.Module):
    """(features [B, C, h, w], masks [B, Q, H, W]) -> K activation logits per mask [B, Q, K, h, w]: the mask
    embedded by a convolution and added to the projected features, residual convolution blocks, a 1 x 1 convolution
    to K maps (the reference's ``MASKAdapterHead`` shape at canvas size; dense 3 x 3 convolutions where it has
    ConvNeXt blocks, see the docs page), plus a fixed mask prior ``MASK_PRIOR * (m - 1)`` on every map (m: the
    mask resized to the features). The prior is not in the reference: with maps near 0 at initialization,
    ``softmax(logsigmoid(map))`` is nearly uniform, the embedding ignores the mask, and a tiny adapter trained for
    a few hundred steps stays far below mask pooling (docs/seg_methods.md); with it, pooling starts as mask
    pooling (weights e^4 ~ 55 times larger inside) and the adapter learns what to add."""

    def __init__(self, channels: int, hidden: int = 32, maps: int = 16, blocks: int = 2):
        super().__init__()
        self.maps = maps
        self.mask_embed = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.GELU())
        self.feat_embed = nn.Conv2d(channels, hidden, 1)
        self.blocks = nn.ModuleList(conv_block(hidden, hidden) for _ in range(blocks))
        self.to_maps = nn.Conv2d(hidden, maps, 1)

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        B, Q = masks.shape[:2]
        h, w = features.shape[-2:]
        m = F.interpolate(masks.float().flatten(0, 1)[:, None], size=(h, w), mode="bilinear", align_corners=False)
        x = self.feat_embed(features).repeat_interleave(Q, dim=0) + self.mask_embed(m)  # (B Q, hidden, h, w)
        for block in self.blocks:
            x = x + block(x)
        return (self.to_maps(x) + MASK_PRIOR * (m - 1)).view(B, Q, self.maps, h, w)


class MaskClassifier(nn.Module):
    """Image -> 16 x 16 features; (features, masks) -> unit embeddings by mask pooling or Mask-Adapter; embeddings
    -> class logits with a cosine classifier (CLIP's ``logit_scale * e @ t.T``)."""

    def __init__(self, classes: int, pool: str = "adapter", width: int = 64, maps: int = 16):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.backbone = cell_features(width)  # (B, width, 16, 16)
        self.adapter = Adapter(width, maps=maps) if pool == "adapter" else None
        self.proj = nn.Linear(width, width)  # the "visual projection" after pooling (CLIP's head)
        self.classes = nn.Parameter(torch.randn(classes, width) * width**-0.5)  # stand-in text embeddings
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))  # CLIP's initial temperature

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixels - 0.5)  # (B, C, 16, 16)

    def embed(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, Q, D) unit embeddings of ``masks`` (B, Q, H, W)."""
        if self.adapter is None:
            pooled = mask_pool(features, masks.float())
        else:  # the reference's pooling weights: softmax over positions of logsigmoid(map)
            pooled = activation_pool(features, F.logsigmoid(self.adapter(features, masks)))
        return F.normalize(self.proj(pooled), dim=-1)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.exp().clamp(max=100.0)  # CLIP clamps the scale at 100
        return scale * embeddings @ F.normalize(self.classes, dim=-1).T  # (B, Q, classes)


class MaskLayout:
    """Slots of a packed row: image bytes (3 S S), ``slots`` signed distance maps in quarter pixels (Q S S), and the
    class of each (Q, -1 for an empty slot)."""

    def __init__(self, size: int = 64, slots: int = 5):
        if size < 64 or slots < 1:
            raise ValueError(f"size must be >= 64 and slots >= 1, got {size} and {slots}")
        self.size, self.slots = size, slots
        n = size * size
        self.spans = {
            "image": (0, 3 * n),
            "sdf": (3 * n, (3 + slots) * n),
            "labels": ((3 + slots) * n, (3 + slots) * n + slots),
        }
        self.width = self.spans["labels"][1]

    def unpack(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        S, Q, part = self.size, self.slots, split_rows(rows, self)
        return {
            "pixels": unpack_pixels(part["image"], S),
            "sdf": part["sdf"].float().view(-1, Q, S, S) / 4.0,
            "labels": part["labels"].long(),
        }


class MaskRows(LazyRows):
    """Canvases of one world as packed int16 rows (row i = canvas (world, i): every object's signed distance map
    and class), made when first indexed."""

    def __init__(self, world: int, n: int, layout: MaskLayout):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.world, self.n, self.layout = world, n, layout

    def _make(self, i: int) -> torch.Tensor:
        from masklab.data.canvases import CATEGORIES, canvas

        L, sp = self.layout, self.layout.spans
        c = canvas(self.world, i, L.size)
        row = torch.zeros(L.width, dtype=torch.int16)
        row[slice(*sp["image"])] = torch.from_numpy(np.rint(c.image * 255).astype(np.int16).transpose(2, 0, 1).ravel())
        sdf = torch.full((L.slots, L.size, L.size), -CLIP)
        labels = torch.full((L.slots,), -1, dtype=torch.int16)
        for q in range(min(L.slots, len(c.masks))):
            sdf[q] = signed_distance(c.masks[q])
            labels[q] = CATEGORIES.index(c.labels[q])
        row[slice(*sp["sdf"])] = torch.round(4 * sdf).to(torch.int16).ravel()
        row[slice(*sp["labels"])] = labels
        return row
