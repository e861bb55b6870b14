"""Attention mask functions with FlexAttention's signature ``(b, h, q_idx, kv_idx) -> bool``.

A mask function says whether query ``q_idx`` of batch row ``b`` and head ``h`` may attend to key ``kv_idx``. The
same function is evaluated two ways:

* by broadcasting: ``b``, ``h``, ``q_idx``, ``kv_idx`` are integer tensors of shapes ``(B,1,1,1)``, ``(1,H,1,1)``,
  ``(1,1,Q,1)``, ``(1,1,1,K)`` and the result broadcasts to ``(B,H,Q,K)`` (``compile.to_dense``, transformers'
  ``sdpa_mask``);
* under ``torch.vmap`` with 0-d tensors (FlexAttention's ``create_block_mask``).

So a mask function uses only elementwise tensor ops and indexing of captured tensors, never Python ``if`` on its
arguments. Every factory returns a function whose ``__name__`` describes it (``sliding_window_64``,
``causal&sliding_window_8``); ``masklab.attention.spec.parse`` reads these names back, as well as the
``sliding_window:64`` form.

Two optional attributes travel with a mask function and through the combinators:

* ``square`` (bool): the mask indexes queries and keys in the same sequence (document ids), so ``q_len`` must equal
  ``kv_len``;
* ``seq_len`` (int or None): the only length the mask is defined for (a packed sequence of known documents);
* ``batch`` (int or None): the batch size the mask is defined for (per-row padding lengths).

References: FlexAttention (Dong et al., 2024, "Flex Attention: A Programming Model for Generating Optimized
Attention Kernels", arXiv:2412.05496) for the signature and the attn-gym mask zoo; Longformer (Beltagy et al., 2020,
Sec. 3.1) for sliding and dilated sliding windows; StreamingLLM (Xiao et al., 2024, Sec. 3.2) for attention sinks;
prefix LM from T5 (Raffel et al., 2020, Sec. 3.2.1, Fig. 3); block causal for block diffusion (Arriola et al., 2025,
"Block Diffusion", Sec. 3.1, the vectorized training mask M_full).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "MaskFn",
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
    "describe",
]


def _named(fn, name: str, *, square: bool = False, seq_len: int | None = None, batch: int | None = None):
    fn.__name__ = name
    fn.__qualname__ = name
    fn.square = square
    fn.seq_len = seq_len
    fn.batch = batch
    return fn


def _int_arg(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def _lengths_tensor(lengths, what: str, minimum: int) -> torch.Tensor:
    t = torch.as_tensor(lengths)
    if t.ndim != 1 or t.numel() == 0 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{what} must be a non-empty 1-D sequence of ints, got {lengths!r}")
    if bool((t < minimum).any()):
        raise ValueError(f"{what} must all be >= {minimum}, got {t.tolist()}")
    return t.to(torch.long)


def _per_device(t: torch.Tensor):
    """``get(device)`` -> ``t`` on that device, copied once. Mask functions index captured tensors through it
    so that a compiled FlexAttention kernel sees a device-resident constant, not a copy per call."""
    copies = {t.device: t}

    def get(device):
        c = copies.get(device)
        if c is None:
            c = copies[device] = t.to(device)
        return c

    return get


def _merge_meta(fns, name: str) -> dict:
    seq_lens = {f.seq_len for f in fns if getattr(f, "seq_len", None) is not None}
    batches = {f.batch for f in fns if getattr(f, "batch", None) is not None}
    if len(seq_lens) > 1:
        raise ValueError(f"cannot combine masks defined for different lengths {sorted(seq_lens)} in {name}")
    if len(batches) > 1:
        raise ValueError(f"cannot combine masks defined for different batch sizes {sorted(batches)} in {name}")
    return {
        "square": any(getattr(f, "square", False) for f in fns),
        "seq_len": seq_lens.pop() if seq_lens else None,
        "batch": batches.pop() if batches else None,
    }


def _operand(fn, op: str) -> str:
    name = getattr(fn, "__name__", repr(fn))
    # parenthesize a combination of another operator so that the name parses back unambiguously
    other = {"&": "|", "|": "&"}[op]
    return f"({name})" if other in name else name


def _check_fns(fns, what: str):
    if not fns:
        raise ValueError(f"{what} needs at least one mask function")
    for f in fns:
        if not callable(f):
            raise ValueError(f"{what} got a non-callable mask {f!r}")


def and_masks(*fns: MaskFn) -> MaskFn:
    """Intersection: a pair is visible when every mask allows it."""
    _check_fns(fns, "and_masks")
    name = "&".join(_operand(f, "&") for f in fns)

    def mask(b, h, q_idx, kv_idx):
        out = fns[0](b, h, q_idx, kv_idx)
        for f in fns[1:]:
            out = out & f(b, h, q_idx, kv_idx)
        return out

    return _named(mask, name, **_merge_meta(fns, name))


def or_masks(*fns: MaskFn) -> MaskFn:
    """Union: a pair is visible when any mask allows it."""
    _check_fns(fns, "or_masks")
    name = "|".join(_operand(f, "|") for f in fns)

    def mask(b, h, q_idx, kv_idx):
        out = fns[0](b, h, q_idx, kv_idx)
        for f in fns[1:]:
            out = out | f(b, h, q_idx, kv_idx)
        return out

    return _named(mask, name, **_merge_meta(fns, name))


def not_mask(fn: MaskFn) -> MaskFn:
    """Complement: visible exactly where ``fn`` hides."""
    _check_fns((fn,), "not_mask")
    inner = fn.__name__
    name = f"~{inner}" if inner.isidentifier() or inner.startswith("(") else f"~({inner})"

    def mask(b, h, q_idx, kv_idx):
        return ~fn(b, h, q_idx, kv_idx)

    return _named(mask, name, **_merge_meta((fn,), name))


def full() -> MaskFn:
    """Every query sees every key (an encoder without padding)."""

    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= 0) & (kv_idx >= 0)  # all True, broadcast to the index shapes

    return _named(mask, "full")


def causal() -> MaskFn:
    """Query i sees keys j <= i."""

    def mask(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return _named(mask, "causal")


def padding(lengths: Sequence[int] | torch.Tensor) -> MaskFn:
    """Right padding: row ``b`` has ``lengths[b]`` real tokens; keys at or past it are hidden from every
    query.

    Queries on padding positions still see the real keys, so no row of the mask is empty (no NaN in softmax).
    """
    lens = _lengths_tensor(lengths, "padding lengths", 0)
    lens_on = _per_device(lens)

    def mask(b, h, q_idx, kv_idx):
        return kv_idx < lens_on(kv_idx.device)[b]

    return _named(mask, f"padding_{'_'.join(map(str, lens.tolist()))}", batch=len(lens))


def bidirectional(lengths: Sequence[int] | torch.Tensor | None = None) -> MaskFn:
    """Full attention, hiding right padding when per-row ``lengths`` are given (``padding(lengths)``)."""
    if lengths is None:
        return full()
    pad = padding(lengths)

    def mask(b, h, q_idx, kv_idx):
        return pad(b, h, q_idx, kv_idx)

    return _named(mask, "bidirectional_" + pad.__name__.removeprefix("padding_"), batch=pad.batch)


def prefix_lm(n: int) -> MaskFn:
    """Prefix LM: the first ``n`` positions attend bidirectionally among themselves; later ones are causal."""
    n = _int_arg(n, "prefix length", 0)

    def mask(b, h, q_idx, kv_idx):
        return (kv_idx < n) | (q_idx >= kv_idx)

    return _named(mask, f"prefix_lm_{n}")


def sliding_window(w: int, *, causal: bool = True) -> MaskFn:
    """Query i sees the ``w`` most recent keys, itself included: ``i - w < j <= i`` (HF's ``sliding_window``).

    ``causal=False`` makes it symmetric: ``|i - j| < w`` (transformers' bidirectional window ``w - 1``, which
    counts ``|i - j| <= w``).
    """
    w = _int_arg(w, "window", 1)
    if causal:

        def mask(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < w)

        return _named(mask, f"sliding_window_{w}")

    def mask(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx < w) & (kv_idx - q_idx < w)

    return _named(mask, f"local_window_{w}")


def dilated_sliding_window(w: int, dilation: int) -> MaskFn:
    """Longformer's dilated window: query i sees ``w`` keys ``i, i-d, ..., i-(w-1)d`` (causal)."""
    w = _int_arg(w, "window", 1)
    d = _int_arg(dilation, "dilation", 1)

    def mask(b, h, q_idx, kv_idx):
        dist = q_idx - kv_idx
        return (dist >= 0) & (dist < w * d) & (dist % d == 0)

    return _named(mask, f"dilated_sliding_window_{w}_{d}")


def sinks(k: int) -> MaskFn:
    """The first ``k`` keys (attention sinks). An overlay: use it as ``or_masks(sliding_window(w), sinks(k))``
    inside ``and_masks(causal(), ...)`` for StreamingLLM; on its own it is not causal."""
    k = _int_arg(k, "number of sinks", 0)

    def mask(b, h, q_idx, kv_idx):
        return kv_idx < k

    return _named(mask, f"sinks_{k}")


def document(lengths: Sequence[int] | torch.Tensor, *, causal: bool = False) -> MaskFn:
    """Packed documents of the given lengths: a query sees only keys of its own document (causally if asked).

    The mask is defined for exactly ``sum(lengths)`` positions and for ``q_len == kv_len``.
    """
    lens = _lengths_tensor(lengths, "document lengths", 1)
    total = int(lens.sum())
    doc_ids = torch.repeat_interleave(torch.arange(len(lens)), lens)  # (total,)
    # pad past the end so that FlexAttention's padded tail blocks index in bounds; -1 never matches a query
    pad_to = -(-total // 128) * 128 + 128
    doc_q = _per_device(torch.cat([doc_ids, torch.full((pad_to - total,), -1)]))
    doc_kv = _per_device(torch.cat([doc_ids, torch.full((pad_to - total,), -2)]))
    name = f"document_{'_'.join(map(str, lens.tolist()))}"
    if causal:

        def mask(b, h, q_idx, kv_idx):
            return (doc_q(q_idx.device)[q_idx] == doc_kv(kv_idx.device)[kv_idx]) & (q_idx >= kv_idx)

        return _named(mask, "causal_" + name, square=True, seq_len=total)

    def mask(b, h, q_idx, kv_idx):
        return doc_q(q_idx.device)[q_idx] == doc_kv(kv_idx.device)[kv_idx]

    return _named(mask, name, square=True, seq_len=total)


def block_causal(block: int) -> MaskFn:
    """Block diffusion: bidirectional inside each block of ``block`` positions, causal across blocks."""
    block = _int_arg(block, "block size", 1)

    def mask(b, h, q_idx, kv_idx):
        return q_idx // block >= kv_idx // block

    return _named(mask, f"block_causal_{block}")


def table(visible: torch.Tensor) -> MaskFn:
    """An explicit pattern: query ``i`` sees key ``j`` where ``visible[i, j]`` ((L, L) bool, the same for every row
    and head), for drawn or learned patterns such as DiffuGPT's annealed attention."""
    if not torch.is_tensor(visible) or visible.dtype != torch.bool or visible.ndim != 2:
        raise ValueError(f"table needs a 2-D bool tensor, got {getattr(visible, 'dtype', type(visible).__name__)}")
    if visible.shape[0] != visible.shape[1] or visible.shape[0] < 1:
        raise ValueError(f"table needs a square (L, L) tensor, got {tuple(visible.shape)}")
    on = _per_device(visible)

    def mask(b, h, q_idx, kv_idx):
        return on(q_idx.device)[q_idx, kv_idx]

    return _named(mask, "table", square=True, seq_len=visible.shape[0])


def describe(fn: MaskFn) -> str:
    """One line: the mask's name and its constraints."""
    parts = [fn.__name__]
    if getattr(fn, "square", False):
        parts.append("q_len == kv_len")
    if getattr(fn, "seq_len", None) is not None:
        parts.append(f"len {fn.seq_len}")
    if getattr(fn, "batch", None) is not None:
        parts.append(f"batch {fn.batch}")
    return ", ".join(parts)
