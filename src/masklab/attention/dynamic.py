"""Trainable dynamic mask attention (DMA): a content-based, query-agnostic importance per key picks which keys each
head keeps; attention runs only over the kept keys, with the importance added as a bias.

Shi et al., 2025, "Trainable Dynamic Mask Sparse Attention" (arXiv:2508.02124), Sec. 3, as the reference code does it
(SmallDoges/flash-dmattn: ``DogeAttention`` in ``examples/modeling/modeling_doge.py`` for the importance,
``topk_mask`` in ``flash_dmattn/utils/mask.py`` for the selection):

    delta = exp(A * softplus(V W_dt))            (B, H, Lk)     importance of each key, from the value states
    keep  = per query, the top-w keys of delta among those the base mask allows (causal: keys j <= i)
    out   = softmax(Q K^T / sqrt(d) + delta)[kept] V[kept]

``A`` (one per head) and ``W_dt`` are trained: the bias enters the softmax of the kept keys, so gradients reach it;
the top-w choice itself is not differentiable (the reference detaches the bias before its top-k).

The reference builds the (Lq, Lk) bias, masks it and takes a top-k per row. Here the causal selection never holds an
(Lq, Lk) tensor: the importance is query-agnostic, so the keys a query keeps are the top-w of its prefix, and prefixes
share work. Keys are cut into blocks of w; a Hillis-Steele scan over blocks gives the top-w of every block prefix
(log2(L / w) merges of (L / w, 2w) candidates); query i then picks its top-w among the top-w before its block and the
keys of its own block up to i: (Lq, 2w) candidates. Memory O(L * w), time O(L * w + L log(L / w)) plus one sort of
the importance. Ties of the importance go to the later key (ranks of a stable sort), so a flat importance (``A = 0``
at initialisation) keeps the w most recent keys: sliding-window attention. Other base masks (documents, windows,
prefix LM) are evaluated a tile of w queries at a time: no (L, L) tensor, but O(L^2) time.

``add_dynamic_masks(model, window)`` runs DMA inside any transformers model through its attention interface.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, prepare_padding_mask

from masklab.attention import mods
from masklab.attention.compile import check_shape
from masklab.attention.hf import MaskContext
from masklab.attention.mods import MaskFn

__all__ = [
    "NAME",
    "DynamicMask",
    "DynamicMaskAttention",
    "add_dynamic_masks",
    "attention_layers",
    "causal_topk",
    "dense_topk",
    "gather_attention",
    "key_ranks",
    "select_keys",
    "use_attention",
]

NAME = "masklab_dma"  # the attention implementation name registered with transformers


def gather_attention(q, k, v, idx, valid, bias=None, scale=None, q_chunk: int = 512):
    """Attention of each query over its own key subset.

    q ``(B, H, Lq, D)``, k / v ``(B, H, Lk, D)``, idx ``(B, H, Lq, w)`` key indices, valid ``(B, H, Lq, w)`` bool,
    bias ``(B, H, Lk)`` per-key additive bias or None. Returns ``(B, H, Lq, D)`` and the probabilities
    ``(B, H, Lq, w)``. A query with no valid key outputs 0. Queries go ``q_chunk`` at a time, so the gathered keys
    and values ``(B, H, q_chunk, w, D)`` stay small next to the O(Lq * w) indices.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if q.shape[2] > q_chunk:
        outs, probs = [], []
        for s in range(0, q.shape[2], q_chunk):
            rows = slice(s, s + q_chunk)
            o, p = gather_attention(q[:, :, rows], k, v, idx[:, :, rows], valid[:, :, rows], bias, scale, q_chunk)
            outs.append(o)
            probs.append(p)
        return torch.cat(outs, dim=2), torch.cat(probs, dim=2)
    B, H, Lq, w = idx.shape
    bi = torch.arange(B, device=idx.device).view(B, 1, 1, 1)
    hi = torch.arange(H, device=idx.device).view(1, H, 1, 1)
    kg, vg = k[bi, hi, idx], v[bi, hi, idx]  # (B, H, Lq, w, D): only the kept keys
    s = (kg @ q.unsqueeze(-1)).squeeze(-1) * scale  # (B, H, Lq, w)
    if bias is not None:
        s = s + bias[bi, hi, idx]
    s = s.masked_fill(~valid, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # all-invalid rows -> 0
    return (p.unsqueeze(-2) @ vg).squeeze(-2), p


def key_ranks(delta: torch.Tensor, key_ok: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct integer ranks of the importance ``(B, H, Lk)``: ordered by (delta, position), so equal importance
    ranks the later key higher. Keys with ``key_ok`` False ``(B, Lk)`` get rank -1 (never kept). Returns the ranks
    and ``order`` (``order[..., r]`` is the key of rank r)."""
    order = delta.detach().argsort(dim=-1, stable=True)  # ascending; ties keep position order
    ar = torch.arange(delta.shape[-1], device=delta.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(-1, order, ar)
    if key_ok is not None:
        ranks = ranks.masked_fill(~key_ok[:, None, :], -1)
    return ranks, order


def _top(x: torch.Tensor, w: int) -> torch.Tensor:
    """The ``w`` largest ranks along the last dim; -1 fills the slots when there are fewer."""
    if x.shape[-1] < w:
        x = F.pad(x, (0, w - x.shape[-1]), value=-1)
    return x.topk(w, dim=-1).values


def causal_topk(ranks: torch.Tensor, window: int, q_pos: torch.Tensor | None = None) -> torch.Tensor:
    """Per query position p, the top-``window`` ranks among keys j <= p, with no (Lq, Lk) tensor.

    ranks ``(B, H, Lk)`` int64 (distinct, -1 = never keep); q_pos ``(Lq,)`` absolute query positions (default
    ``0..Lk-1``). Returns the kept ranks ``(B, H, Lq, window)``, -1 in empty slots.
    """
    B, H, Lk = ranks.shape
    w = window
    nb = -(-Lk // w)
    blocks = F.pad(ranks, (0, nb * w - Lk), value=-1).view(B, H, nb, w)  # block b: keys b*w .. b*w + w - 1
    top, step = blocks, 1  # the top-w of one block of w keys is the block itself
    while step < nb:  # Hillis-Steele inclusive scan: afterwards top[b] = top-w of blocks b - 2 * step + 1 .. b
        earlier = F.pad(top[:, :, :-step], (0, 0, step, 0), value=-1)  # (B, H, nb, w): block b - step
        top = _top(torch.cat([top, earlier], dim=-1), w)
        step *= 2
    before = F.pad(top[:, :, :-1], (0, 0, 1, 0), value=-1)  # (B, H, nb, w): top-w of all keys before block b
    if q_pos is None:
        q_pos = torch.arange(Lk, device=ranks.device)
    qb = q_pos // w  # (Lq,) each query's block
    own = blocks[:, :, qb]  # (B, H, Lq, w): the keys of the query's own block
    key_pos = qb[:, None] * w + torch.arange(w, device=ranks.device)  # (Lq, w)
    own = own.masked_fill(key_pos > q_pos[:, None], -1)  # causal inside the block
    return _top(torch.cat([before[:, :, qb], own], dim=-1), w)  # (B, H, Lq, w) from 2w candidates


def dense_topk(ranks: torch.Tensor, allowed: torch.Tensor, window: int) -> torch.Tensor:
    """The reference rule (flash-dmattn ``topk_mask``): mask the broadcast importance with the (Lq, Lk) mask
    ``allowed`` ``(B|1, H|1, Lq, Lk)`` and take the top-``window`` per query: ``(B, H, Lq, window)`` ranks."""
    return _top(ranks[:, :, None, :].masked_fill(~allowed, -1), window)


def _is_causal(mask) -> bool:
    """masklab's own ``causal()`` (by name and module) or transformers' ``causal_mask_function``."""
    if mask is causal_mask_function:
        return True
    return getattr(mask, "__name__", None) == "causal" and getattr(mask, "__module__", None) == mods.__name__


def _select(delta, window, allowed_rows, key_ok, q_len, q_offset) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``window`` keys by importance per query: the causal scan when ``allowed_rows`` is None, else the rows of
    the mask a tile of ``window`` queries at a time (``allowed_rows(q_positions)`` -> ``(B|1, H|1, t, Lk)``)."""
    B, H, Lk = delta.shape
    if q_offset < 0 or q_offset + q_len > Lk:
        raise ValueError(f"queries {q_offset}..{q_offset + q_len - 1} must lie inside the {Lk} keys")
    w = min(window, Lk)
    ranks, order = key_ranks(delta, key_ok)
    q_pos = torch.arange(q_len, device=delta.device) + q_offset
    if allowed_rows is None:
        kept = causal_topk(ranks, w, q_pos)
    else:  # each tile (B, H, <= w, Lk): memory O(Lk * w), time O(Lq * Lk)
        kept = torch.cat([dense_topk(ranks, allowed_rows(q_pos[s : s + w]), w) for s in range(0, q_len, w)], dim=2)
    valid = kept >= 0
    idx = order.gather(-1, kept.clamp(min=0).flatten(2)).view_as(kept)  # rank -> key position
    return idx, valid


def _rows_of(fn, batch: int, heads: int, kv_pos: torch.Tensor):
    """``q_positions -> fn(b, h, q, kv)`` broadcast to ``(B|1, H|1, t, Lk)``: one tile of a mask function."""
    b = torch.arange(batch, device=kv_pos.device).view(-1, 1, 1, 1)
    h = torch.arange(heads, device=kv_pos.device).view(1, -1, 1, 1)
    kv = kv_pos.view(1, 1, 1, -1)
    return lambda q_pos: fn(b, h, q_pos.view(1, 1, -1, 1), kv)


def select_keys(
    delta: torch.Tensor,
    window: int,
    mask: MaskFn | None = None,
    *,
    key_ok: torch.Tensor | None = None,
    q_len: int | None = None,
    q_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DMA's selection: per (head, query), the top-``window`` keys of the importance ``delta`` ``(B, H, Lk)`` among
    those ``mask`` allows (None: causal) and ``key_ok`` ``(B, Lk)`` keeps (padding).

    Queries are ``q_len`` positions from ``q_offset`` (default: ``Lk`` queries from 0, self-attention). Returns key
    indices and validity, each ``(B, H, q_len, w)`` with ``w = min(window, Lk)``.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    B, H, Lk = delta.shape
    q_len = Lk if q_len is None else q_len
    rows = None
    if mask is not None and not _is_causal(mask):
        check_shape(mask, q_offset + q_len, Lk, B if getattr(mask, "batch", None) is not None else None)
        rows = _rows_of(mask, B, H, torch.arange(Lk, device=delta.device))
    return _select(delta, window, rows, key_ok, q_len, q_offset)


class DynamicMaskAttention(nn.Module):
    """Multi-head self-attention that keeps ``window`` keys per head and query, chosen by a learned key
    importance.

    ``forward(x, mask=None)``: x ``(B, L, dim)`` -> ``(B, L, dim)``. ``mask`` is a masklab mask function that
    bounds the candidates (default causal, the O(L * window) path); the top-``window`` of the importance among the
    allowed keys are kept. ``last_keep`` holds the kept indices and validity of the last call, for inspection.
    """

    def __init__(self, dim: int, n_heads: int, window: int, *, base_mask: MaskFn | None = None):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.n_heads, self.head_dim, self.window = n_heads, dim // n_heads, window
        self.base_mask = base_mask
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.dt_proj = nn.Linear(dim, n_heads)  # value states (all heads) -> one importance logit per head
        self.A = nn.Parameter(torch.zeros(n_heads))  # per-head scale; A = 0 starts with a flat importance
        self.last_keep: tuple[torch.Tensor, torch.Tensor] | None = None

    def _project(self, x):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split(self.n_heads * self.head_dim, dim=-1)
        v_flat = v
        q, k, v = (t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
        return q, k, v, v_flat

    def importance(self, v_flat: torch.Tensor) -> torch.Tensor:
        """delta = exp(A * softplus(v W_dt)): ``(B, L, dim)`` value states -> ``(B, H, L)``."""
        return torch.exp(self.A * F.softplus(self.dt_proj(v_flat))).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        B, L, dim = x.shape
        q, k, v, v_flat = self._project(x)
        delta = self.importance(v_flat)
        idx, valid = select_keys(delta, self.window, mask or self.base_mask)
        self.last_keep = (idx, valid)
        o, _ = gather_attention(q, k, v, idx, valid, bias=delta)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))


# --- transformers: DMA inside any HF model through its attention interface -------------------------------------------


class DynamicMask(nn.Module):
    """DMA's per-layer importance, held as Doge's attention holds it: ``dt_proj`` maps the value states of all
    key/value heads to one logit per key/value head, ``A`` scales it (zeros: a flat importance at the start)."""

    def __init__(self, n_kv_heads: int, head_dim: int, window: int):
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self.window = window
        self.dt_proj = nn.Linear(n_kv_heads * head_dim, n_kv_heads)
        self.A = nn.Parameter(torch.zeros(n_kv_heads))
        self.last_keep: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, Hkv, Lq, w) indices, validity

    def importance(self, value: torch.Tensor) -> torch.Tensor:
        """value ``(B, Hkv, Lk, D)`` -> delta ``(B, Hkv, Lk)``."""
        B, Hkv, Lk, D = value.shape
        dt = self.dt_proj(value.transpose(1, 2).reshape(B, Lk, Hkv * D))  # (B, Lk, Hkv)
        return torch.exp(self.A * F.softplus(dt)).transpose(1, 2)


def attention_layers(model) -> dict[int, nn.Module]:
    """Self-attention modules of a transformers model by ``layer_idx`` (those with q/k/v projections)."""
    out = {}
    for mod in model.modules():
        idx = getattr(mod, "layer_idx", None)
        if idx is not None and all(hasattr(mod, p) for p in ("q_proj", "k_proj", "v_proj")):
            out[idx] = mod
    if not out:
        raise ValueError(f"no attention modules with layer_idx and q/k/v projections in {type(model).__name__}")
    return out


def _mask_context(
    batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=causal_mask_function,
    attention_mask=None, device="cpu", **kwargs,
) -> MaskContext:  # fmt: skip
    """transformers mask interface: record what the model asked for; build no (Lq, Lk) tensor."""
    return MaskContext(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=int(q_offset),
        kv_offset=int(kv_offset),
        mask_function=mask_function,
        padding_mask=prepare_padding_mask(attention_mask, kv_length, kv_offset),
        device=torch.device(device),
    )


def use_attention(model, name: str, fn: Callable) -> None:
    """Register ``fn`` as transformers attention ``name`` (with a mask interface that builds no tensor) and switch
    ``model`` to it."""
    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, _mask_context)
    try:
        model.set_attn_implementation(name)
    except (AttributeError, ValueError, KeyError):  # older / custom models: set it in the config directly
        model.config._attn_implementation = name


def _dma_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: DMA over the model's query / key / value states (after RoPE and cache)."""
    dm = getattr(module, "dynamic_mask", None)
    if dm is None:
        raise ValueError(f"layer {getattr(module, 'layer_idx', '?')} has no dynamic mask: call add_dynamic_masks")
    if not isinstance(attention_mask, MaskContext):
        raise ValueError(f"DMA needs the model's MaskContext, got {type(attention_mask).__name__}")
    if dropout:
        raise ValueError(f"DMA applies no attention dropout, got dropout={dropout}")
    ctx = attention_mask
    B, H, Lq, D = query.shape
    groups = H // key.shape[1]  # query heads per key/value head (GQA)
    delta = dm.importance(value)  # (B, Hkv, Lk)
    idx, valid = _select_for_context(ctx, delta, dm.window)
    dm.last_keep = (idx, valid)
    k, v = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)  # (B, H, Lk, D)
    idx, valid, bias = (t.repeat_interleave(groups, 1) for t in (idx, valid, delta))
    out, _ = gather_attention(query, k, v, idx, valid, bias=bias, scale=scaling)
    return out.transpose(1, 2).contiguous(), None  # (B, Lq, H, D)


def _select_for_context(ctx: MaskContext, delta: torch.Tensor, window: int):
    """Selection for one layer from the model's MaskContext: the causal scan when the model asked for its plain
    causal mask with keys from position 0; otherwise the model's mask function, a tile of queries at a time."""
    rows = None
    if not (ctx.kv_offset == 0 and ctx.mask_function is causal_mask_function):
        kv_pos = torch.arange(delta.shape[-1], device=delta.device) + ctx.kv_offset
        rows = _rows_of(ctx.mask_function, delta.shape[0], 1, kv_pos)  # padding enters through the ranks
    return _select(delta, window, rows, ctx.padding_mask, ctx.q_length, ctx.q_offset)


def add_dynamic_masks(model, window: int) -> dict[int, DynamicMask]:
    """Give every self-attention layer of ``model`` a ``DynamicMask`` (trainable ``dt_proj`` and ``A``, submodule
    ``dynamic_mask``) and run the model with DMA keeping ``window`` keys per head and query. Returns the masks by
    layer. ``remove_dynamic_masks`` is ``set_attn_implementation`` back to ``"sdpa"``."""
    layers = attention_layers(model)
    for mod in layers.values():
        n_kv = mod.k_proj.out_features // mod.head_dim
        ref = mod.k_proj.weight
        mod.dynamic_mask = DynamicMask(n_kv, mod.head_dim, window).to(device=ref.device, dtype=ref.dtype)
    use_attention(model, NAME, _dma_attention)
    return {i: mod.dynamic_mask for i, mod in layers.items()}
