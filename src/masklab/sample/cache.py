"""The exact KV cache of block-causal decoding (BD3-LM, Arriola et al. 2025, Sec. 3.1 and Alg. 2; reference:
kuleshov-group/bd3lms ``models/dit.py``, ``store_kv``).

Under a block-causal mask the keys and values of a committed block depend only on the blocks up to it, so once a
block is final they never change. Each block then passes through the model once more after it is decoded, to append
its keys and values, and every denoising step of the next block runs only that block's tokens against them. The
logits are the uncached ones (the whole prefix run again under the block-causal mask) up to float rounding:
tests/sample/test_cache.py checks 1e-5.

:class:`KVCache` holds, per layer, the keys and values [R, H, T, D] of the committed prefix of R rows, and runs any
Hugging Face model whose forward takes ``cache=`` and returns ``.cache`` (Llama and the other decoders):
:meth:`KVCache.logits` for a denoising step (the block's own keys and values are dropped), :meth:`KVCache.commit`
to append a final block, :meth:`KVCache.keep` to drop rows that are done. The attention mask is the block-causal
mask function of :mod:`masklab.attention` compiled at the block's offset, ANDed with the padding of each row.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache

from masklab.attention import block_causal, to_dense
from masklab.objectives.base import logits_of

__all__ = ["KVCache", "check_cache"]


def check_cache(model) -> None:
    """Refuse, in one ValueError naming it, a model that cannot return keys and values (no ``cache=`` argument)."""
    forward = getattr(model, "forward", None) if hasattr(model, "config") else None
    params = inspect.signature(forward).parameters if forward is not None else {}
    if "cache" not in params and "past_key_values" not in params:
        raise ValueError(
            f"cache: {type(model).__name__} cannot return keys and values; the KV cache needs a Hugging Face decoder "
            "(the bd3 recipe's Llama)"
        )


class KVCache:
    """Keys and values of the committed blocks of ``rows`` rows of ``model``, blocks of ``block`` tokens."""

    def __init__(self, model, block: int, pad_id: int | None = None):
        check_cache(model)
        self.model, self.pad_id, self.mask_fn = model, pad_id, block_causal(block)
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (K, V) [R, H, T, D]
        self.real: torch.Tensor | None = None  # (R, T) bool: committed positions that are not padding

    @property
    def length(self) -> int:
        """T, the committed positions."""
        return 0 if self.real is None else self.real.shape[1]

    def _run(self, ids: torch.Tensor, rows: torch.Tensor | None):
        """The model on ``ids`` [r, n] at positions T .. T+n-1 of ``rows`` (None: all), against the cache."""
        r, n = ids.shape
        T = self.length
        past = [(k, v) if rows is None else (k[rows], v[rows]) for k, v in self.layers]
        real = ids != self.pad_id if self.pad_id is not None else torch.ones_like(ids, dtype=torch.bool)
        if T:
            real = torch.cat([self.real if rows is None else self.real[rows], real], 1)  # (r, T + n)
        # rows T .. T+n of the block-causal mask (all visible for a whole block), padding keys hidden: (r, 1, n, T + n)
        mask = to_dense(self.mask_fn, n, T + n, q_offset=T, device=ids.device) & real[:, None, None, :]
        pos = torch.arange(T, T + n, device=ids.device)[None].expand(r, -1)
        cache = DynamicCache(ddp_cache_data=past) if past else DynamicCache()
        with torch.no_grad():
            return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True), real

    def logits(self, ids: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [r, n, V] of the block ``ids`` [r, n] of ``rows`` given their committed prefix; the cache is
        unchanged."""
        return logits_of(self._run(ids, rows)[0])

    def commit(self, ids: torch.Tensor) -> None:
        """Append the final block ``ids`` [R, n] of every row: its keys and values join the cache."""
        out, self.real = self._run(ids, None)
        self.layers = [(layer.keys, layer.values) for layer in out.cache.layers]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current rows)."""
        self.layers = [(k[rows], v[rows]) for k, v in self.layers]
        self.real = None if self.real is None else self.real[rows]
