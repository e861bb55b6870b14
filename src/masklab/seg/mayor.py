"""MAYOR's mask head on dense, overlapping instances: instance-aware mask targets against plain pixel targets.

MAYOR (Qin et al., ACM MM 2021, "Mask is All You Need: Rethinking Mask R-CNN for Dense and Arbitrary-Shaped
Scene Text Detection", Sec. 3.2-3.3) finds that a Mask R-CNN mask head confuses neighbouring instances when a
proposal holds several (dense text): trained to "classify each pixel to text or non-text", it paints every text
pixel in the box. Its two fixes are an MLP decoder in place of the "deconv-conv" decoder, and **instance-aware mask
learning**: the head learns the shape of the one instance its proposal belongs to, so that masks come out
separated and compact. The paper's full text and code were not available to check; this module follows the
abstract's definitions:

* ``targets="plain"``: the RoI's target is every foreground pixel in it, whichever instance it belongs to;
* ``targets="instance"``: the RoI's target is its own instance's mask (other instances are background).

The world (:func:`dense_scene`): lines of scikit-learn digits drawn in one colour per line on a smooth background,
each glyph overlapping its neighbours' boxes (advance 45-80% of a glyph's width), as dense text lines are; a glyph
drawn later covers the one before. Instances are the visible pixels of each glyph (a glyph that would hide more than
half of another is not drawn). Proposals are the ground-truth boxes jittered (keyed), so the comparison isolates the
mask head, as MAYOR's mask-head ablations do.

The network: a small convolutional backbone at stride 2, RoIAlign (:func:`roi_align`, one bilinear sample at
each bin centre, ``aligned=True``), one convolution block on the 8 x 8 RoI features and a decoder to 16 x 16 mask
logits: ``mlp`` (MAYOR: 1 x 1 convolution to 8 channels, flatten, two linear layers) or ``deconv`` (Mask R-CNN: a
2x transposed convolution and a 1 x 1 convolution). Masks are pasted back with bilinear sampling and thresholded
at 0.5, as Mask R-CNN pastes them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import keyed
from masklab.data.rows import LazyRows, split_rows, unpack_pixels
from masklab.seg.nets import conv_block

__all__ = [
    "DenseScene",
    "dense_scene",
    "roi_align",
    "paste_masks",
    "jitter_boxes",
    "RoIMaskNet",
    "DenseLayout",
    "DenseRows",
    "TARGETS",
    "DECODERS",
]

TARGETS = ("instance", "plain")
DECODERS = ("mlp", "deconv")
WORLD_SALT = 0x3A70  # dense scenes draw from derive(eval_keys(seed, index), WORLD_SALT): not the canvases' stream
STREAM_JITTER = 0x3A71  # keyed stream of the proposal jitter


@dataclass(frozen=True)
class DenseScene:
    """One dense scene: image float32 [S, S, 3] in [0, 1], instance ids int64 [S, S] (0 background, 1..N), and the
    tight box (x, y, w, h) of each instance int64 [N, 4]."""

    image: np.ndarray
    instances: np.ndarray
    boxes: np.ndarray

    @property
    def masks(self) -> np.ndarray:
        """bool [N, S, S], pairwise disjoint."""
        return self.instances[None] == np.arange(1, len(self.boxes) + 1)[:, None, None]


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8)


def dense_scene(seed: int, index: int, size: int = 64) -> DenseScene:
    """The dense scene (seed, index): 2-4 lines of overlapping digit glyphs (see the module docstring)."""
    for name, v in (("seed", seed), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 32:
        raise ValueError(f"size must be an int of at least 32, got {size!r}")
    key = keyed.derive(keyed.eval_keys(int(seed), [int(index)]), WORLD_SALT)
    rng = np.random.default_rng(int(key[0]))
    low = torch.from_numpy(rng.uniform(0.2, 0.8, (1, 3, 4, 4)).astype(np.float32))
    image = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    image = np.ascontiguousarray(image.clip(0, 1))
    inst = np.zeros((size, size), np.int64)
    digits = _digit_images()
    y, n = int(rng.integers(0, 6)), 0
    while True:
        h = int(rng.integers(size // 5, size // 3.5 + 1))
        if y + h > size:
            break
        colour = np.where(image[y : y + h].mean((0, 1)) > 0.5, 0.1, 0.9) + rng.uniform(-0.08, 0.08, 3)
        x = int(rng.integers(0, 6))
        while True:
            w = max(4, int(round(h * rng.uniform(0.6, 0.8))))
            dy = int(rng.integers(-1, 2))
            if x + w > size or not 0 <= y + dy <= size - h:
                break
            glyph = _glyph(digits[rng.integers(len(digits))], h, w)
            n += _draw(image, inst, glyph, y + dy, x, n + 1, colour.astype(np.float32))
            x += max(2, int(round(w * rng.uniform(0.45, 0.8))))
        y += h + int(rng.integers(-1, 3))  # lines nearly touch, sometimes overlap by a row
    ids = np.unique(inst[inst > 0])
    remap = np.zeros(n + 2, np.int64)
    remap[ids] = np.arange(1, len(ids) + 1)
    inst = remap[inst]
    boxes = np.zeros((len(ids), 4), np.int64)
    for k in range(len(ids)):
        ys, xs = np.nonzero(inst == k + 1)
        boxes[k] = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    return DenseScene(image.clip(0, 1), inst, boxes)


def _glyph(digit: np.ndarray, h: int, w: int) -> np.ndarray:
    """A digit's 8 x 8 image upscaled bilinearly to h x w and thresholded (the canvases' rule)."""
    up = F.interpolate(torch.from_numpy(digit)[None, None], size=(h, w), mode="bilinear", align_corners=False)
    return up[0, 0].numpy() > 0.45


def _draw(image, inst, glyph, y, x, k, colour) -> int:
    """Draw glyph ``k`` unless it would hide more than half of an instance or leave itself under 8 pixels."""
    if glyph.sum() < 8:
        return 0
    region = inst[y : y + glyph.shape[0], x : x + glyph.shape[1]]
    covered = region[glyph]
    for other in np.unique(covered[covered > 0]):
        if 2 * (covered == other).sum() > (inst == other).sum():
            return 0
    region[glyph] = k
    image[y : y + glyph.shape[0], x : x + glyph.shape[1]][glyph] = colour
    return 1


# --------------------------------------------------------------------------------------------- RoIs
def _box_grid(boxes: torch.Tensor, out: int, size: int) -> torch.Tensor:
    """(K, out, out, 2) normalized grid_sample coordinates of the bin centres of ``boxes`` (K, 4) x0, y0, x1, y1
    in pixels of a ``size`` image (align_corners=False: pixel p's centre is p + 0.5)."""
    t = (torch.arange(out, device=boxes.device, dtype=torch.float32) + 0.5) / out  # (out,)
    x = boxes[:, 0:1] + t * (boxes[:, 2:3] - boxes[:, 0:1])  # (K, out)
    y = boxes[:, 1:2] + t * (boxes[:, 3:4] - boxes[:, 1:2])
    gx, gy = 2 * x / size - 1, 2 * y / size - 1
    return torch.stack([gx[:, None, :].expand(-1, out, -1), gy[:, :, None].expand(-1, -1, out)], -1)


def roi_align(features: torch.Tensor, boxes: torch.Tensor, batch: torch.Tensor, out: int, size: int) -> torch.Tensor:
    """RoIAlign (He et al. 2017; ``aligned=True``, one sample per bin): (K, C, out, out) bilinear samples of
    ``features`` (B, C, h, w), which cover a ``size`` x ``size`` image, at the bin centres of ``boxes`` (K, 4)
    x0, y0, x1, y1 in image pixels of images ``batch`` (K,). Samples outside the image are 0."""
    grid = _box_grid(boxes.float(), out, size)
    return F.grid_sample(features[batch], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(K, size, size) image-sized probabilities of ``probs`` (K, M, M) over ``boxes`` (K, 4) x0, y0, x1, y1:
    each pixel centre inside a box reads the mask bilinearly (edge bins extend to the box border), 0 outside."""
    p = (torch.arange(size, device=probs.device, dtype=torch.float32) + 0.5)[None]  # (1, S) pixel centres
    bx = boxes.float()
    u = (p - bx[:, 0:1]) / (bx[:, 2:3] - bx[:, 0:1]).clamp(min=1e-6)  # (K, S): place in the box, 0..1
    v = (p - bx[:, 1:2]) / (bx[:, 3:4] - bx[:, 1:2]).clamp(min=1e-6)
    inside = ((u >= 0) & (u < 1))[:, None, :] & ((v >= 0) & (v < 1))[:, :, None]  # (K, S, S)
    grid = torch.stack([(2 * u - 1)[:, None, :].expand(-1, size, -1), (2 * v - 1)[:, :, None].expand(-1, -1, size)], -1)
    out = F.grid_sample(probs[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    return out * inside


def jitter_boxes(boxes: torch.Tensor, keys: torch.Tensor, size: int, shift: float = 0.15, scale: float = 0.15):
    """Proposals from ground-truth boxes (K, 4) x, y, w, h: centre moved by up to ``shift`` of the side, each side
    scaled by a factor in [1 - scale, 1 + scale], clipped to the image; keyed per box (``keys`` (K,)). Returns x0,
    y0, x1, y1 (float32 (K, 4))."""
    u = keyed.uniform(keys, 4, STREAM_JITTER).to(boxes.device) * 2 - 1  # (K, 4) in [-1, 1)
    b = boxes.float()
    cx, cy = b[:, 0] + b[:, 2] / 2 + shift * u[:, 0] * b[:, 2], b[:, 1] + b[:, 3] / 2 + shift * u[:, 1] * b[:, 3]
    w, h = b[:, 2] * (1 + scale * u[:, 2]), b[:, 3] * (1 + scale * u[:, 3])
    out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, size)
    return out


class RoIMaskNet(nn.Module):
    """Backbone at stride 2, RoIAlign to ``roi`` x ``roi``, a convolution block, and a decoder to ``2 roi`` x
    ``2 roi`` mask logits per RoI."""

    def __init__(self, decoder: str = "mlp", width: int = 32, roi: int = 8, hidden: int = 256):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.roi, self.out, self.decoder_kind = roi, 2 * roi, decoder
        self.backbone = nn.Sequential(
            conv_block(3, width // 2),  # 64 x 64
            conv_block(width // 2, width, 2),  # 32 x 32
            conv_block(width, width),
            conv_block(width, width),
        )
        self.head = conv_block(width, width)  # on the RoI features
        if decoder == "mlp":
            self.decoder = nn.Sequential(
                nn.Conv2d(width, 8, 1), nn.Flatten(), nn.Linear(8 * roi * roi, hidden), nn.GELU(),
                nn.Linear(hidden, self.out * self.out),
            )  # fmt: skip
        else:
            self.decoder = nn.Sequential(nn.ConvTranspose2d(width, width, 2, 2), nn.GELU(), nn.Conv2d(width, 1, 1))

    def forward(self, pixels: torch.Tensor, boxes: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S), boxes (K, 4) x0, y0, x1, y1 in pixels, batch (K,) -> mask logits (K, 2 roi, 2 roi)."""
        features = self.backbone(pixels - 0.5)
        r = roi_align(features, boxes, batch, self.roi, pixels.shape[-1])  # (K, C, roi, roi)
        return self.decoder(self.head(r)).view(-1, self.out, self.out)


# --------------------------------------------------------------------------------------------- rows
class DenseLayout:
    """Slots of a packed row: image bytes (3 S S), instance ids (S S), and ``slots`` boxes (x, y, w, h; w = 0
    for an empty slot)."""

    def __init__(self, size: int = 64, slots: int = 64):
        if size < 32 or slots < 1:
            raise ValueError(f"size must be >= 32 and slots >= 1, got {size} and {slots}")
        self.size, self.slots = size, slots
        n = size * size
        self.spans = {"image": (0, 3 * n), "instances": (3 * n, 4 * n), "boxes": (4 * n, 4 * n + 4 * slots)}
        self.width = self.spans["boxes"][1]

    def unpack(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        S, part = self.size, split_rows(rows, self)
        return {
            "pixels": unpack_pixels(part["image"], S),
            "instances": part["instances"].long().view(-1, S, S),
            "boxes": part["boxes"].long().view(-1, self.slots, 4),
        }


class DenseRows(LazyRows):
    """Dense scenes ``0 .. n - 1`` of one world as int16 rows, made when first indexed."""

    def __init__(self, world: int, n: int, layout: DenseLayout):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.world, self.n, self.layout = world, n, layout

    def _make(self, i: int) -> torch.Tensor:
        L, sp = self.layout, self.layout.spans
        s = dense_scene(self.world, i, L.size)
        if len(s.boxes) > L.slots:
            raise ValueError(f"scene {i} of world {self.world} has {len(s.boxes)} instances, more than {L.slots} slots")
        row = torch.zeros(L.width, dtype=torch.int16)
        row[slice(*sp["image"])] = torch.from_numpy(np.rint(s.image * 255).astype(np.int16).transpose(2, 0, 1).ravel())
        row[slice(*sp["instances"])] = torch.from_numpy(s.instances.astype(np.int16).ravel())
        boxes = torch.zeros(L.slots, 4, dtype=torch.int16)
        boxes[: len(s.boxes)] = torch.from_numpy(s.boxes.astype(np.int16))
        row[slice(*sp["boxes"])] = boxes.ravel()
        return row
