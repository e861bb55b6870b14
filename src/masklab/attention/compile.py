"""Compile a mask function to what each backend needs: a dense bool tensor, an additive float mask, or a FlexAttention
``BlockMask`` (cached per shape).

``to_dense`` is the reference: every other form is tested against it. The BlockMask follows FlexAttention (Dong et
al., 2024, arXiv:2412.05496, Sec. 3.2): the (Q, K) plane is cut into ``block_size`` tiles; tiles with no visible
pair are skipped, fully visible tiles skip the mask function, partial tiles evaluate it.

FlexAttention on CPU has no backward pass (torch 2.13): use ``attention(..., backend="flex")`` for inference there
and train with ``backend="sdpa"`` (dense mask). On CUDA, Flex trains.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from masklab.attention.mods import MaskFn

__all__ = [
    "to_dense",
    "to_additive",
    "to_block_mask",
    "block_mask_to_dense",
    "BlockMaskCache",
    "CacheStats",
    "default_cache",
    "attention",
    "check_shape",
]


def _check_len(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def check_shape(mask: MaskFn, q_len: int, kv_len: int, batch: int | None = None) -> int:
    """Validate ``(q_len, kv_len, batch)`` against the mask's constraints; return the batch size to use."""
    name = getattr(mask, "__name__", repr(mask))
    _check_len(q_len, "q_len")
    _check_len(kv_len, "kv_len")
    if getattr(mask, "square", False) and q_len != kv_len:
        raise ValueError(f"mask {name} needs q_len == kv_len, got q_len={q_len}, kv_len={kv_len}")
    seq_len = getattr(mask, "seq_len", None)
    if seq_len is not None and (q_len != seq_len or kv_len != seq_len):
        raise ValueError(f"mask {name} is defined for length {seq_len}, got q_len={q_len}, kv_len={kv_len}")
    mask_batch = getattr(mask, "batch", None)
    if batch is None:
        return mask_batch or 1
    _check_len(batch, "batch")
    if mask_batch is not None and batch != mask_batch:
        raise ValueError(f"mask {name} is defined for batch {mask_batch}, got batch={batch}")
    return batch


def to_dense(
    mask: MaskFn,
    q_len: int,
    kv_len: int,
    *,
    batch: int | None = None,
    heads: int = 1,
    device: torch.device | str = "cpu",
    q_offset: int = 0,
    kv_offset: int = 0,
) -> torch.Tensor:
    """Evaluate ``mask`` on every (b, h, q, kv): a bool tensor ``(B, H, q_len, kv_len)``, True = may attend.

    ``q_offset`` / ``kv_offset`` shift the absolute positions (a KV cache: queries start at ``q_offset``).
    Shape checks use the absolute extent ``q_offset + q_len`` and ``kv_offset + kv_len``.
    """
    batch = check_shape(mask, q_offset + q_len, kv_offset + kv_len, batch)
    _check_len(heads, "heads")
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    h = torch.arange(heads, device=device).view(1, -1, 1, 1)
    q = (torch.arange(q_len, device=device) + q_offset).view(1, 1, -1, 1)
    kv = (torch.arange(kv_len, device=device) + kv_offset).view(1, 1, 1, -1)
    out = mask(b, h, q, kv)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
        raise ValueError(f"mask {getattr(mask, '__name__', mask)} must return a bool tensor, got {type(out)}")
    return out.expand(batch, heads, q_len, kv_len)


def to_additive(mask: MaskFn, q_len: int, kv_len: int, *, dtype: torch.dtype = torch.float32, **kwargs):
    """Float mask ``(B, H, q_len, kv_len)``: 0 where visible, ``finfo(dtype).min`` where hidden.

    ``finfo.min`` rather than ``-inf`` (as transformers' ``eager_mask``): a fully hidden row then gives a
    uniform softmax instead of NaN.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"additive mask dtype must be floating point, got {dtype}")
    dense = to_dense(mask, q_len, kv_len, **kwargs)
    zero = torch.zeros((), dtype=dtype, device=dense.device)
    return torch.where(dense, zero, torch.finfo(dtype).min)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    build_seconds: float = 0.0  # total time spent building block masks (misses)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class BlockMaskCache:
    """LRU cache of BlockMasks keyed by (mask function, B, H, q_len, kv_len, block size, device).

    The key holds the function object itself, so the same spec built twice by a factory is two entries; build
    a mask function once and reuse it. ``stats`` counts hits and misses.
    """

    def __init__(self, maxsize: int = 64):
        if maxsize < 1:
            raise ValueError(f"cache maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._store: OrderedDict = OrderedDict()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
        self.stats = CacheStats()

    def get(self, mask, q_len, kv_len, *, batch, heads, block_size, device, compile_build) -> BlockMask:
        key = (mask, batch, heads, q_len, kv_len, block_size, str(torch.device(device)))
        hit = self._store.get(key)
        if hit is not None:
            self._store.move_to_end(key)
            self.stats.hits += 1
            return hit
        t0 = time.perf_counter()
        bm = create_block_mask(
            mask, batch, heads, q_len, kv_len, device=device, BLOCK_SIZE=block_size, _compile=compile_build
        )
        self.stats.build_seconds += time.perf_counter() - t0
        self.stats.misses += 1
        self._store[key] = bm
        if len(self._store) > self.maxsize:
            self._store.popitem(last=False)
        return bm


default_cache = BlockMaskCache()


def to_block_mask(
    mask: MaskFn,
    q_len: int,
    kv_len: int,
    *,
    batch: int | None = None,
    heads: int | None = None,
    block_size: int = 128,
    device: torch.device | str = "cpu",
    cache: BlockMaskCache | None = default_cache,
    compile_build: bool = False,
) -> BlockMask:
    """A FlexAttention BlockMask for ``mask`` at this shape, from ``cache`` when built before.

    ``batch`` / ``heads`` None broadcast over that dimension (the mask must then ignore ``b`` / ``h``); a mask with
    per-row padding sets its own batch. ``compile_build=True`` builds through ``torch.compile`` (worth it from ~32k
    tokens; the eager build materializes the (Q, K) plane once per head and row).
    """
    check_shape(mask, q_len, kv_len, batch)
    if batch is None:
        batch = getattr(mask, "batch", None)  # None: one mask broadcast over rows
    if heads is not None:
        _check_len(heads, "heads")
    _check_len(block_size, "block_size")
    if cache is None:
        return create_block_mask(
            mask, batch, heads, q_len, kv_len, device=device, BLOCK_SIZE=block_size, _compile=compile_build
        )
    return cache.get(
        mask,
        q_len,
        kv_len,
        batch=batch,
        heads=heads,
        block_size=block_size,
        device=device,
        compile_build=compile_build,
    )


def block_mask_to_dense(bm: BlockMask) -> torch.Tensor:
    """Element-level bool mask ``(B, H, Q, K)`` that a FlexAttention kernel applies for ``bm``.

    Full tiles are visible without calling the mask function; partial tiles call it; other tiles are skipped.
    This is the oracle for the block structure: it equals ``to_dense`` iff no tile is misclassified.
    """
    q_len, kv_len = bm.seq_lengths
    bq, bk = bm.BLOCK_SIZE
    B, H = bm.kv_num_blocks.shape[:2]
    nq, nk = -(-q_len // bq), -(-kv_len // bk)

    def tiles(num, idx):
        # (B, H, nq, nk) bool: tile (i, j) listed among the first num[b,h,i] indices of row i
        if num is None:
            return torch.zeros(B, H, nq, nk, dtype=torch.bool, device=bm.kv_num_blocks.device)
        pos = torch.arange(idx.shape[-1], device=idx.device)
        valid = pos.view(1, 1, 1, -1) < num[..., :nq].unsqueeze(-1)
        out = torch.zeros(B, H, nq, idx.shape[-1] + 1, dtype=torch.bool, device=idx.device)
        col = torch.where(valid, idx[:, :, :nq], idx.shape[-1]).long().clamp(max=idx.shape[-1])
        out.scatter_(-1, col, valid)
        return out[..., :nk]

    partial = tiles(bm.kv_num_blocks, bm.kv_indices)
    full_t = tiles(bm.full_kv_num_blocks, bm.full_kv_indices)

    def expand(t):
        return t.repeat_interleave(bq, dim=2).repeat_interleave(bk, dim=3)[:, :, :q_len, :kv_len]

    b = torch.arange(B).view(-1, 1, 1, 1)
    h = torch.arange(H).view(1, -1, 1, 1)
    q = torch.arange(q_len).view(1, 1, -1, 1)
    kv = torch.arange(kv_len).view(1, 1, 1, -1)
    inside = bm.mask_mod(b, h, q, kv).expand(B, H, q_len, kv_len).to(partial.device)
    return expand(full_t) | (expand(partial) & inside)


_compiled_flex = None


def _warm(mask, device) -> None:
    """Call the mask once eagerly on ``device``: its captured tensors are copied there before tracing."""
    z = torch.zeros((), dtype=torch.long, device=device)
    mask(z, z, z, z)


def _flex():
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: MaskFn | BlockMask,
    *,
    backend: str = "sdpa",
    scale: float | None = None,
    block_size: int = 128,
    cache: BlockMaskCache | None = default_cache,
    compiled: bool = True,
) -> torch.Tensor:
    """Masked attention ``(B, H, Lq, D) x (B, H, Lk, D) -> (B, H, Lq, D)`` with one mask, any backend.

    ``backend``: ``"sdpa"`` (dense bool mask, trains everywhere), ``"flex"`` (BlockMask + FlexAttention; on CPU
    inference only), ``"eager"`` (additive mask, explicit softmax; the textbook reference). ``compiled=False`` runs Flex
    without ``torch.compile`` (slow, materializes scores; for tests). A prebuilt BlockMask must match the shape.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be (B, H, L, D), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, Lq, _ = q.shape
    Lk = k.shape[2]
    if backend == "flex":
        if (
            q.device.type == "cpu"
            and torch.is_grad_enabled()
            and (q.requires_grad or k.requires_grad or v.requires_grad)
        ):
            raise ValueError("FlexAttention has no backward on CPU (torch 2.13); train with backend='sdpa'")
        if isinstance(mask, BlockMask):
            bm = mask
            mb, mh, mq, mk = bm.shape
            if (mq, mk) != (Lq, Lk) or mb not in (1, B) or mh not in (1, H):
                raise ValueError(
                    f"block mask built for (B, H, Q, K)={tuple(bm.shape)} does not match "
                    f"q (B={B}, H={H}, Q={Lq}) "
                    f"and k (K={Lk})"
                )
        else:
            per_b = B if getattr(mask, "batch", None) is not None else None
            bm = to_block_mask(mask, Lq, Lk, batch=per_b, block_size=block_size, device=q.device, cache=cache)
        _warm(bm.mask_mod, q.device)
        if compiled:
            return _flex()(q, k, v, block_mask=bm, scale=scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "called without torch.compile": intended here (tests, debugging)
            return flex_attention(q, k, v, block_mask=bm, scale=scale)
    if isinstance(mask, BlockMask):
        raise ValueError(f"backend {backend!r} needs a mask function, got a BlockMask")
    per_b = B if getattr(mask, "batch", None) is not None else None
    if backend == "sdpa":
        dense = to_dense(mask, Lq, Lk, batch=per_b, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, scale=scale)
    if backend == "eager":
        add = to_additive(mask, Lq, Lk, batch=per_b, dtype=q.dtype, device=q.device)
        s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
        return torch.softmax(s + add, dim=-1) @ v
    raise ValueError(f"unknown attention backend {backend!r}; expected 'sdpa', 'flex' or 'eager'")
