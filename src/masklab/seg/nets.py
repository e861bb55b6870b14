"""Small pieces the mask-using canvas models share (:mod:`masklab.seg.agent`, :mod:`masklab.seg.mask_adapter`,
:mod:`masklab.seg.mayor`, :mod:`masklab.seg.oneref`): a convolution block, a pre-norm transformer block on
``F.scaled_dot_product_attention``, and the FLOP bookkeeping of a model whose parameters multiply different numbers
of positions (a convolution at 64 x 64 against one at 16 x 16, a mask head run once per RoI).

``multiply_positions`` reads, from one forward, how many positions each ``Linear`` / ``Conv2d`` /
``ConvTranspose2d`` weight multiplies per example (a convolution: its output pixels; a transposed convolution: its
input pixels, each of which multiplies the whole kernel; a linear layer: its rows), so that the budget's count
(:mod:`masklab.compare.flops`, 6 x parameters x positions) can weigh each parameter by its own positions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv_block", "cell_features", "Block", "multiply_positions", "position_groups"]


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (``stride``), GroupNorm(1) (a LayerNorm over channels and pixels) and GELU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(1, cout), nn.GELU())


def cell_features(width: int) -> nn.Sequential:
    """The canvas models' image encoder: pixels [B, 3, S, S] -> features [B, width, S / 4, S / 4] (16 x 16 cells of
    a 64-pixel canvas), four :func:`conv_block` of widths width / 4, width / 2, width, width, the middle two of
    stride 2."""
    return nn.Sequential(
        conv_block(3, width // 4),  # S x S
        conv_block(width // 4, width // 2, 2),  # S / 2
        conv_block(width // 2, width, 2),  # S / 4
        conv_block(width, width),
    )


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x); ``keep`` [B, L] bool hides padded keys."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        bias = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, L): True = may be attended
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, L, D / H)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm2(x))


_MULTIPLYING = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def multiply_positions(module: nn.Module, run: Callable[[], object], examples: int) -> dict[int, float]:
    """{id(parameter): positions it multiplies per example} for the weights and biases of every ``Linear``,
    ``Conv2d`` and ``ConvTranspose2d`` in ``module``, read from the shapes of one call of ``run()`` (a forward over
    ``examples`` examples; a layer called several times adds up its calls)."""
    counts: dict[nn.Module, float] = {}

    def hook(layer, inputs, output):
        if isinstance(layer, nn.ConvTranspose2d):  # every input pixel multiplies the whole kernel
            n = inputs[0].numel() / layer.in_channels
        elif isinstance(layer, nn.Conv2d):
            n = output.numel() / layer.out_channels
        else:
            n = output.numel() / layer.out_features
        counts[layer] = counts.get(layer, 0.0) + n

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _MULTIPLYING)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return {id(p): n / examples for layer, n in counts.items() for p in layer.parameters(recurse=False)}


def position_groups(module: nn.Module, positions: dict[int, float], tokens: float) -> list:
    """``flop_groups()`` for :mod:`masklab.compare.flops`: each multiplying parameter of ``module`` with its share
    ``positions / tokens`` (``tokens``: the task's ``example_tokens``); parameters that multiply nothing (norms,
    lookup tables, learned tokens) are left out, as the budget leaves out embeddings."""
    seen, groups = set(), []
    for p in module.parameters():
        if id(p) in positions and id(p) not in seen:
            seen.add(id(p))
            groups.append(([p], positions[id(p)] / tokens))
    return groups
