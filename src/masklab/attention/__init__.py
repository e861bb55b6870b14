"""Who may see whom: one mask language ``(b, h, q_idx, kv_idx) -> bool`` compiled to every backend.

``mods`` builds and combines mask functions, ``compile`` turns them into dense / additive / FlexAttention masks,
``spec`` parses the text form, ``hf`` runs any transformers model with them (per layer), ``dynamic`` (DMA) and
``estimated`` (SEA) are trainable sparse masks.
"""

from masklab.attention.compile import attention, to_additive, to_block_mask, to_dense
from masklab.attention.mods import (
    and_masks,
    bidirectional,
    block_causal,
    causal,
    dilated_sliding_window,
    document,
    full,
    not_mask,
    or_masks,
    padding,
    prefix_lm,
    sinks,
    sliding_window,
    table,
)
from masklab.attention.spec import parse, parse_layerwise

__all__ = [
    "and_masks",
    "or_masks",
    "not_mask",
    "full",
    "causal",
    "padding",
    "bidirectional",
    "prefix_lm",
    "sliding_window",
    "dilated_sliding_window",
    "sinks",
    "document",
    "block_causal",
    "table",
    "to_dense",
    "to_additive",
    "to_block_mask",
    "attention",
    "parse",
    "parse_layerwise",
]
