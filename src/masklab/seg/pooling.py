"""Mask pooling: one feature vector per mask from a dense feature map.

* ``mask_pool``: average of the features under each mask (soft masks weight pixels), the mask-pooling step of
  open-vocabulary segmenters such as FC-CLIP (Yu et al., NeurIPS 2023) that classify masks with CLIP features.
* ``activation_pool`` and ``MaskAdapter``: Mask-Adapter (Li et al., CVPR 2025, Sec. 3.2). Instead of pooling
  under the binary mask, a small network turns (features, mask) into K semantic activation maps; each map is
  normalized with a softmax over positions, pools the features, and the K pooled vectors are averaged.
  ``MaskAdapter`` is a compact stand-in for the paper's adapter (convolutional mask embedding added to the
  features, a few conv blocks, a 1x1 conv to K maps); its pooling rule is the paper's.

Shapes: features [B, C, h, w]; masks [B, Q, H, W] (resized to h x w with bilinear interpolation when they
differ); outputs [B, Q, C]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["mask_pool", "activation_pool", "MaskAdapter"]


def _resize(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    m = masks.float() if not masks.is_floating_point() else masks
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    B, Q = m.shape[:2]
    return F.interpolate(m.reshape(B * Q, 1, *m.shape[-2:]), size=size, mode="bilinear", align_corners=False).reshape(
        B, Q, *size
    )


def _check(features: torch.Tensor, maps: torch.Tensor, name: str, dims: int) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C, h, w], got shape {tuple(features.shape)}")
    if maps.dim() != dims or maps.shape[0] != features.shape[0]:
        want = "[B, Q, H, W]" if dims == 4 else "[B, Q, K, h, w]"
        raise ValueError(f"{name} must be {want} with the features' batch size, got shape {tuple(maps.shape)}")


def mask_pool(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Average features under each mask: sum(m * f) / (sum(m) + eps) -> [B, Q, C]. An empty mask gives
    zeros."""
    _check(features, masks, "masks", 4)
    m = _resize(masks, tuple(features.shape[-2:])).to(features.dtype)
    num = torch.einsum("bqhw,bchw->bqc", m, features)
    return num / (m.sum((-1, -2)).unsqueeze(-1) + eps)


def activation_pool(features: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Mask-Adapter pooling: softmax each of K activation maps over positions, pool, average over K -> [B, Q,
    C].

    ``activations`` is [B, Q, K, h, w] logits on the feature grid; ``-inf`` removes a position.
    """
    _check(features, activations, "activations", 5)
    if tuple(activations.shape[-2:]) != tuple(features.shape[-2:]):
        raise ValueError(
            f"activations are {tuple(activations.shape[-2:])} but features are {tuple(features.shape[-2:])}"
        )
    w = activations.flatten(-2).softmax(-1)  # (B, Q, K, hw)
    pooled = torch.einsum("bqkn,bcn->bqkc", w.to(features.dtype), features.flatten(-2))
    return pooled.mean(2)


class MaskAdapter(nn.Module):
    """Masks + features -> K semantic activation maps per mask -> pooled embedding [B, Q, C]
    (Mask-Adapter)."""

    def __init__(self, channels: int, hidden: int = 64, maps: int = 16, blocks: int = 2):
        super().__init__()
        self.maps = maps  # K activation maps per mask (the paper uses 16)
        self.mask_embed = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.GELU())
        self.feat_embed = nn.Conv2d(channels, hidden, 1)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                    nn.GroupNorm(1, hidden),
                    nn.Conv2d(hidden, hidden, 1),
                    nn.GELU(),
                )
                for _ in range(blocks)
            ]
        )
        self.to_maps = nn.Conv2d(hidden, maps, 1)

    def activations(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Activation logits [B, Q, K, h, w]."""
        _check(features, masks, "masks", 4)
        B, Q = masks.shape[:2]
        h, w = features.shape[-2:]
        m = _resize(masks, (h, w)).to(features.dtype).reshape(B * Q, 1, h, w)
        f = self.feat_embed(features).repeat_interleave(Q, dim=0)  # (B*Q, hidden, h, w)
        x = f + self.mask_embed(m)
        x = x + self.blocks(x)
        return self.to_maps(x).reshape(B, Q, self.maps, h, w)

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return activation_pool(features, self.activations(features, masks))
