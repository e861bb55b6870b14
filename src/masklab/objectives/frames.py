"""Masked frame prediction for sequences of feature vectors (speech features, sensor frames, ...).

Spans of frames chosen by :func:`masklab.corrupt.frames.span_mask` (or :func:`ask2mask`) are replaced by a
learned mask embedding, a bidirectional transformer reads the sequence, and a linear head regresses the
original frames. The loss is the L1 distance on masked, non-padded frames only, as in masked predictive coding
for speech (Mockingjay, Liu et al. 2020, Sec. 2.2; TERA, Liu et al. 2021), optionally weighted per utterance
(Ask2Mask's utterance-level confidence weighting, Baskar et al. 2022, Sec. 2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from masklab.models.blocks import transformer_encoder
from masklab.objectives.base import Objective

__all__ = ["MaskedFramePredictor", "FrameOutput", "masked_frame_loss", "FrameObjective"]


@dataclass
class FrameOutput:
    loss: torch.Tensor  # scalar
    pred: torch.Tensor  # [B, T, F] predicted frames


def masked_frame_loss(
    pred: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean L1 over masked frames; ``weights`` [B] scales each utterance's frames (Ask2Mask)."""
    per_frame = (pred - frames).abs().mean(-1)  # (B, T)
    m = mask.float()
    if weights is not None:
        m = m * weights[:, None].to(m.dtype)
    return (per_frame * m).sum() / mask.float().sum().clamp(min=1)


class MaskedFramePredictor(nn.Module):
    """``forward(frames [B, T, F], mask [B, T], lengths=None, weights=None) -> FrameOutput``."""

    def __init__(self, feat_dim: int, dim: int = 64, depth: int = 2, heads: int = 4, max_len: int = 1024):
        super().__init__()
        self.inp = nn.Linear(feat_dim, dim)
        self.mask_emb = nn.Parameter(torch.randn(dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.encoder = transformer_encoder(dim, depth, heads, 2 * dim)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, feat_dim)

    @torch.no_grad()
    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, D] encoder outputs with every frame visible (the probes' per-frame features)."""
        T = frames.shape[1]
        return self.norm(self.encoder(self.inp(frames) + self.pos[:T]))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, lengths=None, weights=None) -> FrameOutput:
        B, T, _ = frames.shape
        if T > self.pos.shape[0]:
            raise ValueError(f"sequence of {T} frames is longer than max_len {self.pos.shape[0]}")
        if mask.shape != (B, T):
            raise ValueError(f"mask must be [{B}, {T}], got {tuple(mask.shape)}")
        x = self.inp(frames)
        x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x) + self.pos[:T]  # the model never sees them
        pad = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=frames.device)
            pad = torch.arange(T, device=frames.device) >= lengths[:, None]  # (B, T) True = padding
            mask = mask & ~pad
        pred = self.out(self.norm(self.encoder(x, src_key_padding_mask=pad)))
        return FrameOutput(masked_frame_loss(pred, frames, mask, weights), pred)


class FrameObjective(Objective):
    """The training-loop interface around :class:`MaskedFramePredictor`: ``forward(frames [B, T, F], keys) ->
    (loss, metrics)``, with spans from :func:`masklab.corrupt.frames.span_mask` keyed on each example's key."""

    name = "frames"

    def __init__(self, model: MaskedFramePredictor, mask_prob: float = 0.3, mask_length: int = 3):
        super().__init__(model)
        self.mask_prob, self.mask_length = mask_prob, mask_length

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        from masklab.corrupt.frames import span_mask

        mask = span_mask(tuple(batch.shape[:2]), self.mask_prob, self.mask_length, keys=keys).to(batch.device)
        out = self.model(batch, mask)
        return out.loss, {"l1": out.loss.detach()}
