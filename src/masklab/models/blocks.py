"""Transformer blocks for the small non-Hugging Face models (frames, W2v-BERT, LaMP)."""

from __future__ import annotations

from torch import nn

__all__ = ["transformer_encoder"]


def transformer_encoder(dim: int, depth: int, heads: int, ff: int) -> nn.TransformerEncoder:
    """``depth`` pre-norm GELU blocks of width ``dim`` (no dropout, batch first) in an ``nn.TransformerEncoder``,
    each block initialised on its own. ``nn.TransformerEncoder(layer, depth)`` deep-copies one layer, so every
    block would start with the same weights; fairseq's and Hugging Face's encoders (and ``nn.Transformer``, which
    re-initialises after cloning) start each block from its own draw. Parameter names are those of the plain
    encoder (``layers.i.*``)."""

    def block():
        return nn.TransformerEncoderLayer(
            dim, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )

    encoder = nn.TransformerEncoder(block(), depth, enable_nested_tensor=False)
    encoder.layers = nn.ModuleList(block() for _ in range(depth))
    return encoder
