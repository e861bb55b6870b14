"""STAMP's all-mask prediction (Liu, Feng & Chen, 2025, "Better, Stronger, Faster: Tackling the Trilemma in
MLLM-based Segmentation with Simultaneous Textual Mask Prediction", arXiv:2512.00395; github.com/HKUST-LongGroup/STAMP).

After the text answer, which ends in the segmentation token ``<seg>`` (STAMP's ``<|seg|>``), the sequence is
extended with one ``<mask>`` token per cell of the grid and a single forward pass classifies every one of them as
object or not: a binary head on the decoder's last hidden state gives one foreground logit per mask token (the
reference's ``bi_logits``; ``> 0`` is the object). The attention is mixed (:func:`stamp_attention`): text stays
causal, so the answer is not changed by what follows, while mask tokens see the whole prefix and each other
(bidirectional spatial context for "fill in the blank"). At inference the prefix's KV cache is reused, as the
reference does by slicing the generation's cache at ``<|seg|>`` and appending the mask queries: the mask costs one
forward pass whatever the grid size.

Here the grid is Text4Seg's 16 x 16 (the cells of :mod:`masklab.seg.models.rows`), so both are scored at the same
resolution; the reference uses its merged visual-token grid. Mask tokens sit at fixed columns after ``<seg>``, so
their RoPE offsets to the image tokens are the same in every example.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, DynamicCache, InternVLConfig, InternVLForConditionalGeneration

from masklab.attention import and_masks, causal, or_masks, to_dense

__all__ = ["StampConfig", "StampForSegmentation", "mask_block", "stamp_attention", "StampOutput"]


class StampConfig(InternVLConfig):
    """InternVL's config plus the ids of STAMP's two special tokens and the mask grid."""

    model_type = "masklab-stamp"
    mask_token_id: int = 4
    seg_token_id: int = 5
    mask_grid: int = 16


def mask_block(start: int):
    """Queries and keys at or after ``start`` (the mask tokens) see each other: a masklab mask function."""

    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= start) & (kv_idx >= start)

    mask.__name__ = mask.__qualname__ = f"mask_block_{start}"
    mask.square, mask.seq_len, mask.batch = False, None, None
    return mask


def stamp_attention(start: int):
    """STAMP's mixed attention over a sequence whose mask tokens start at ``start``: causal, or both in the mask
    block."""
    return or_masks(causal(), mask_block(start))


def _visible(keep: torch.Tensor):
    """Keys that are not padding: ``keep`` (B, K) 1 = real token."""

    def mask(b, h, q_idx, kv_idx):
        return keep[b, kv_idx] != 0

    mask.__name__ = mask.__qualname__ = "not_padding"
    mask.square, mask.seq_len, mask.batch = False, None, keep.shape[0]
    return mask


class StampOutput(dict):
    """``text_logits`` (B, L, V) of every position and ``mask_logits`` (B, N) of the mask tokens."""

    __getattr__ = dict.__getitem__


class StampForSegmentation(InternVLForConditionalGeneration):
    """InternVL with STAMP's binary mask head (hidden state -> one foreground logit per mask token)."""

    config_class = StampConfig

    def __init__(self, config: StampConfig):
        super().__init__(config)
        self.mask_head = nn.Linear(config.text_config.hidden_size, 1)

    @property
    def cells(self) -> int:
        return self.config.mask_grid**2

    def mask_ids(self, batch: int, device) -> torch.Tensor:
        """(B, 1 + N) ids of ``<seg>`` followed by the N mask tokens."""
        seg = torch.full((batch, 1), self.config.seg_token_id, dtype=torch.long, device=device)
        return torch.cat([seg, torch.full((batch, self.cells), self.config.mask_token_id, device=device)], 1)

    def all_mask_forward(self, ids, pixel_values, keep, positions, cache=None, offset: int = 0) -> StampOutput:
        """One forward over ``ids`` (B, Q) whose last N tokens are the mask tokens, under STAMP's attention;
        ``keep`` (B, offset + Q) marks real tokens, ``cache`` holds the first ``offset`` positions."""
        B, Q = ids.shape
        start = offset + Q - self.cells
        rule = and_masks(stamp_attention(start), _visible(keep))
        attn = to_dense(rule, Q, offset + Q, batch=B, device=ids.device, q_offset=offset)  # (B, 1, Q, offset + Q)
        out = self.model(input_ids=ids, pixel_values=pixel_values, attention_mask=attn, position_ids=positions,
                         cache=cache)  # fmt: skip
        h = out.last_hidden_state  # (B, Q, D)
        return StampOutput(text_logits=self.lm_head(h[:, : Q - self.cells]),
                           mask_logits=self.mask_head(h[:, Q - self.cells :]).squeeze(-1))  # fmt: skip

    @torch.no_grad()
    def predict(self, pixel_values, ids, keep, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """(foreground logits (B, N), whether the text answer was ``<seg>`` (B,)) with two forward passes: the
        prefill of ``ids`` (the image and prompt), whose last logits give the text answer, then ``<seg>`` and the
        N mask tokens at once on the prefill's KV cache."""
        cache = DynamicCache(config=self.config.get_text_config())
        out = super().forward(input_ids=ids, pixel_values=pixel_values, attention_mask=keep, position_ids=positions,
                              cache=cache, logits_to_keep=1)  # fmt: skip
        said_seg = out.logits[:, -1].argmax(-1) == self.config.seg_token_id
        more = self.mask_ids(len(ids), ids.device)
        keep = torch.cat([keep, torch.ones_like(more)], 1)
        pos = positions[:, -1:] + 1 + torch.arange(more.shape[1], device=ids.device)
        logits = self.all_mask_forward(more, None, keep, pos, cache=cache, offset=ids.shape[1]).mask_logits
        return logits, said_seg


AutoConfig.register(StampConfig.model_type, StampConfig, exist_ok=True)
AutoModel.register(StampConfig, StampForSegmentation, exist_ok=True)
