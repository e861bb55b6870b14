"""Prompt-guided Mask Proposal (PMP) on the canvas world: query-based mask proposals whose queries also attend to
the referring expression, against the same proposer without the text.

PMP (Li et al., "Prompt-Guided Mask Proposal for Two-Stage Open-Vocabulary Segmentation", arXiv 2024) adds to a
query-based mask generator (Mask2Former's transformer decoder: learned queries, cross-attention to the pixel
features, self-attention, FFN; each mask is the dot product of a query's embedding with the per-pixel mask
features) a **cross-attention from the queries to the text tokens** after each decoder layer, so that every
decoding step yields prompt-guided proposals. Without the prompt the generator is the plain two-stage first stage:
its proposals must cover the target by chance.

At canvas size (:class:`Proposer`): a 4-block convolutional backbone (64 -> 32 -> 16 pixels, width 64), mask
features at 32 x 32 (the 16 x 16 map upsampled plus a 1 x 1 projection of the 32 x 32 map, a one-level pixel
decoder), ``queries`` learned queries, ``layers`` decoder layers of [text cross-attention (PMP only)] ->
cross-attention to the 16 x 16 features (+ a learned position embedding) -> self-attention + FFN
(:class:`masklab.seg.nets.Block`); the expression is encoded by word and position embeddings and one transformer
block (standing in for CLIP's text encoder), its padding hidden from every attention. Each query also gives a
score (a linear layer), the proposer's ranking of its masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.seg.nets import Block, conv_block

__all__ = ["CrossAttention", "Proposer", "match_cost", "proposal_ious"]


class CrossAttention(nn.Module):
    """Pre-norm cross-attention with a residual: x [B, Q, D] + attn(LN x, LN memory [B, M, C]); ``keep`` [B, M]
    bool hides memory positions (padding)."""

    def __init__(self, dim: int, memory: int, heads: int = 2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.norm_x, self.norm_m = nn.LayerNorm(dim), nn.LayerNorm(memory)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(memory, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        B, Q, D = x.shape
        M = memory.shape[1]
        q = self.q(self.norm_x(x)).view(B, Q, self.heads, -1).transpose(1, 2)  # (B, H, Q, D / H)
        k, v = self.kv(self.norm_m(memory)).view(B, M, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, M): True = may be attended
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return x + self.proj(a.transpose(1, 2).reshape(B, Q, D))


class Proposer(nn.Module):
    """(pixels [B, 3, S, S], prompt ids [B, P] left-padded with 0) -> (mask logits [B, N, S/2, S/2], scores
    [B, N]); ``prompt=False`` is the same proposer without the text encoder and the text cross-attentions (the
    prompt is then not read)."""

    def __init__(self, vocab_size: int, prompt_len: int, prompt: bool = True, size: int = 64, width: int = 64,
                 queries: int = 8, layers: int = 2, heads: int = 2):  # fmt: skip
        super().__init__()
        self.prompt = prompt
        self.stem = nn.Sequential(conv_block(3, width // 4), conv_block(width // 4, width // 2, 2))  # 32 x 32
        self.deep = nn.Sequential(conv_block(width // 2, width, 2), conv_block(width, width))  # 16 x 16
        self.lateral = nn.Conv2d(width // 2, width, 1)  # the 32 x 32 map into the mask features
        self.pos = nn.Parameter(torch.randn(1, width, size // 4, size // 4) * 0.02)  # of the 16 x 16 cells
        self.queries = nn.Parameter(torch.randn(queries, width) * 0.02)
        self.image_attn = nn.ModuleList(CrossAttention(width, width, heads) for _ in range(layers))
        self.self_attn = nn.ModuleList(Block(width, heads) for _ in range(layers))
        if prompt:
            self.word = nn.Embedding(vocab_size, width)
            self.word_pos = nn.Parameter(torch.randn(prompt_len, width) * 0.02)
            self.text = Block(width, heads)
            self.text_attn = nn.ModuleList(CrossAttention(width, width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.mask_embed = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.score = nn.Linear(width, 1)

    def forward(self, pixels: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = pixels.shape[0]
        fine = self.stem(pixels - 0.5)  # (B, C / 2, 32, 32)
        coarse = self.deep(fine)  # (B, C, 16, 16)
        mask_features = F.interpolate(coarse, scale_factor=2, mode="nearest") + self.lateral(fine)  # (B, C, 32, 32)
        memory = (coarse + self.pos).flatten(2).transpose(1, 2)  # (B, 256, C)
        x = self.queries.expand(B, -1, -1)  # (B, N, C)
        if self.prompt:
            keep = prompt != 0  # (B, P): padding is never attended
            words = self.text(self.word(prompt) + self.word_pos[: prompt.shape[1]], keep)  # (B, P, C)
        for i in range(len(self.image_attn)):
            x = self.image_attn[i](x, memory)
            x = self.self_attn[i](x)
            if self.prompt:  # PMP: the queries read the text after each decoder layer
                x = self.text_attn[i](x, words, keep)
        x = self.norm(x)
        masks = torch.einsum("bnc,bchw->bnhw", self.mask_embed(x), mask_features)  # (B, N, 32, 32)
        return masks, self.score(x)[..., 0]


def match_cost(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, N) Mask2Former's matching cost of each proposal against the one target: the mean sigmoid BCE over
    pixels plus the dice loss ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)`` (``batch_sigmoid_ce_loss`` +
    ``batch_dice_loss`` of the reference matcher, without a class term). logits (B, N, H, W), target (B, H, W)."""
    t = target.float()[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(2).mean(-1)
    p = logits.sigmoid().flatten(2)
    dice = 1 - (2 * (p * t.flatten(2)).sum(-1) + 1) / (p.sum(-1) + t.flatten(2).sum(-1) + 1)
    return bce + dice


def proposal_ious(masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, N) IoU of each binary proposal (B, N, H, W) with the target (B, H, W); an empty union counts 1."""
    t = target.bool()[:, None]
    inter = (masks & t).flatten(2).sum(-1).float()
    union = (masks | t).flatten(2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
