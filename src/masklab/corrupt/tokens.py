"""Random token masking (BERT, Devlin et al. 2019, Sec. 3.1) and whole-word masking (BERT README, 2019
update).

Selected positions get the mask token with probability ``mix[0]``, a random non-special token with ``mix[1]``
and stay unchanged with ``mix[2]`` (80/10/10 by default). Special and pad tokens are never selected and never
drawn as replacements. A row that holds only special tokens is left untouched (documented no-op).

Whole-word masking selects words instead of tokens: each word draws one number at its first token and all its
tokens follow that draw. Word ids come from the tokenizer's ``word_ids()`` (-1 for none), from offsets with
the rule Hugging Face uses (:func:`word_ids_from_offsets`), or from a continuation-prefix table (``##``).
Grouping uses a running maximum over positions, so memory is O(L) per row (Hugging Face builds a [B, L, L]
tensor).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from masklab.corrupt import _backend, jit, keyed
from masklab.corrupt._select import check_prob, select_count
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, RANDOM, UNCHANGED, Corruption

__all__ = [
    "random_mask",
    "whole_word_mask",
    "eligible",
    "replacement_pool",
    "check_prob",
    "check_mix",
    "select_count",
    "apply_mix",
    "word_ids_from_offsets",
    "word_ids_from_starts",
    "word_starts",
    "word_index",
    "spread_from_starts",
]


def _index(b: torch.Tensor, size: int) -> torch.Tensor:
    """int32 draws from :func:`keyed.bits32` -> uniform index in [0, size) as int64 (``keyed.bits % size``)."""
    b = b.long()
    b &= 0xFFFFFFFF
    return b.remainder_(size)


def _row_keys(ids: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Checked ``ids`` and keys as [B] (one key may serve the whole batch; the kernels index keys per row)."""
    check_ids(ids, keys)
    return keys if keys.shape == ids.shape[:1] else keys.reshape(-1).expand(ids.shape[0])


def check_token_id(name: str, v) -> int:
    """``v`` as a non-negative int token id (``None`` or a float is a one-line error naming ``name``)."""
    if (
        isinstance(v, bool)
        or not isinstance(v, numbers.Integral | torch.Tensor)
        or (torch.is_tensor(v) and (v.numel() != 1 or v.is_floating_point()))
    ):
        raise TypeError(f"{name} must be an integer token id, got {type(v).__name__} {v!r}")
    if int(v) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(v)}")
    return int(v)


def check_count(count):
    """``count`` (None, an int or a [B] integer tensor) with no negative entry."""
    if count is None:
        return None
    bad_type = isinstance(count, bool) or not isinstance(count, numbers.Integral | torch.Tensor)
    if bad_type or (torch.is_tensor(count) and count.is_floating_point()):
        raise TypeError(f"count must be an int or an integer tensor, got {type(count).__name__}")
    if (torch.as_tensor(count) < 0).any():
        raise ValueError(f"count must be >= 0, got {count}")
    return count


def check_ids(ids: torch.Tensor, keys: torch.Tensor | None = None) -> None:
    """``ids`` must be [B, L] with L > 0; ``keys``, when given, one per row or one for the whole batch."""
    if not torch.is_tensor(ids) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        what = ids.dtype if torch.is_tensor(ids) else type(ids).__name__
        raise TypeError(f"ids must be an integer tensor of token ids, got {what}")
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be a non-empty [B, L] tensor, got shape {tuple(ids.shape)}")
    if keys is not None and keys.numel() not in (1, ids.shape[0]):
        raise ValueError(f"keys holds {keys.numel()} keys for {ids.shape[0]} rows: give one per row, or one for all")


def eligible(ids: torch.Tensor, special_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """[B, L] bool: positions that may be selected (not a special or pad token)."""
    special = _special_key(special_ids)
    if len(special) <= 8:  # a few compares beat isin's sort on small lists
        out = torch.ones_like(ids, dtype=torch.bool)
        for s in special:
            out &= ids != s
        return out
    return ~torch.isin(ids, torch.as_tensor(special, dtype=ids.dtype, device=ids.device))


def eligible_in_vocab(ids, special_ids, vocab_size: int):
    """Same as :func:`eligible`, by one lookup in a cached [V] table. ``ids`` may be a tensor or a numpy array
    (the CPU fast paths); the result is the same kind. numpy: ids outside [0, V) fall back to :func:`eligible`;
    torch: the table is read at clamped ids and ids outside [0, V) are eligible unless listed as special, so an
    accelerator never waits on a host sync."""
    special_ids = _special_key(special_ids)
    device = str(getattr(ids, "device", "cpu"))
    table = _special_table(int(vocab_size), tuple(sorted(int(s) for s in special_ids)), device)
    if isinstance(ids, np.ndarray):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            return ~np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))
        return table.numpy()[ids]
    # no host sync (a GPU pipeline keeps queueing): ids outside [0, V) are eligible unless listed as special
    ok = table[ids.clamp(0, vocab_size - 1)] | (ids < 0) | (ids >= vocab_size)
    for s in special_ids:
        if not 0 <= int(s) < vocab_size:
            ok &= ids != int(s)
    return ok


@functools.lru_cache(maxsize=32)
def _special_table(vocab_size: int, special_ids: tuple, device: str) -> torch.Tensor:
    keep = torch.ones(vocab_size, dtype=torch.bool, device=device)
    special = torch.tensor(special_ids, dtype=torch.long, device=device)
    keep[special[(special >= 0) & (special < vocab_size)]] = False
    return keep


def replacement_pool(vocab_size: int, special_ids, device=None) -> torch.Tensor:
    """Sorted ids that may be drawn as random replacements: the vocabulary minus special tokens (cached)."""
    return _pool(int(vocab_size), tuple(sorted(int(s) for s in special_ids)), str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=32)
def _pool(vocab_size: int, special_ids: tuple, device: str) -> torch.Tensor:
    keep = torch.ones(vocab_size, dtype=torch.bool, device=device)
    special = torch.as_tensor(list(special_ids), dtype=torch.long, device=device)
    keep[special[(special >= 0) & (special < vocab_size)]] = False
    if not keep.any():
        raise ValueError("the vocabulary holds only special tokens: nothing to draw as a random replacement")
    return keep.nonzero().squeeze(1)


def apply_mix(
    ids: torch.Tensor,
    selected: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    pool: torch.Tensor,
    mix: tuple[float, float, float],
    role_u: torch.Tensor | None = None,
    pick: torch.Tensor | None = None,
) -> Corruption:
    """Turn a selection into a Corruption: mask / random / unchanged by ``mix``, targets at selected
    positions.

    ``role_u`` [B, L] overrides the per-token draw that picks the role (SpanBERT draws one per span); ``pick``
    [B, L] int32 draws of ``Stream.TOKEN_PICK`` (:func:`keyed.bits32`) may be passed when already computed.
    """
    p_mask, p_rand, _ = check_mix(mix)
    B, L = ids.shape
    if role_u is None:
        role_u = keyed.uniform(keys, L, stream=Stream.TOKEN_ROLE)
    as_mask = selected & (role_u < p_mask)
    inputs = ids.masked_fill(as_mask, mask_id)
    kind = selected.to(torch.int8).mul_(UNCHANGED).masked_fill_(as_mask, MASKED)
    if p_rand > 0:
        as_rand = selected & (role_u >= p_mask) & (role_u < p_mask + p_rand)
        pick = _index(keyed.bits32(keys, L, Stream.TOKEN_PICK) if pick is None else pick, len(pool))
        drawn = pool.to(ids.device).index_select(0, pick.reshape(-1)).view(B, L).to(ids.dtype)
        inputs = torch.where(as_rand, drawn, inputs)
        kind.masked_fill_(as_rand, RANDOM)
    targets = ids.masked_fill(~selected, IGNORE_INDEX)
    return Corruption(inputs, targets, selected, None, kind)


def random_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    count: int | torch.Tensor | None = None,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    can: torch.Tensor | None = None,
) -> Corruption:
    """BERT masking of ``ids`` [B, L] with per-example ``keys`` [B] (see :func:`keyed.example_keys`).

    ``prob`` selects each eligible token independently (as Hugging Face's collator does); ``count`` instead
    selects exactly that many per row (int or [B] tensor), capped by the number of eligible tokens. ``can``
    [B, L] bool further restricts the eligible positions (for example ``attention_mask.bool()``).

    With ``prob``, one 32-bit draw ``b`` per position decides everything: the token is selected when
    ``b < T = floor(prob 2**32)``; given that, ``b`` is uniform on [0, T), so ``b < T mix[0]`` masks it,
    ``b < T (mix[0] + mix[1])`` replaces it by a pool token indexed by ``b``'s offset in that range (uniform
    over the pool), and the rest keep it: the joint law of three independent draws, at a third of the hashing.
    On the CPU the work after the hash touches only the ~``prob`` share of candidate positions (numpy); other
    devices run the same integer arithmetic densely in torch, with identical results.
    """
    prob, mask_id, count = check_prob("prob", prob), check_token_id("mask_id", mask_id), check_count(count)
    keys = _row_keys(ids, keys)
    path = _backend.path(ids)
    if count is None and path == "kernel" and (kern := jit.kernels()) is not None:
        plan = _kernel_plan(float(prob), tuple(mix), int(vocab_size), _special_key(special_ids), int(mask_id), False)
        return _kernel_record(kern.random_mask(*_kernel_data(ids, keys, can), *plan))
    p_mask, p_rand, _ = check_mix(mix)
    pool = replacement_pool(vocab_size, special_ids, ids.device)
    if count is not None:
        return _random_count(ids, keys, can, special_ids, vocab_size, pool, mask_id, mix, count)
    T = int(prob * 2**32)  # exact: a power-of-two scaling
    b = keyed.bits32(keys, ids.shape[1], Stream.TOKEN_SELECT)
    impl = _random_mask_torch if path == "torch" else _random_mask_np
    return impl(ids, b, can, special_ids, vocab_size, pool, mask_id, T, _role_cuts(T, p_mask, p_rand))


_TOKEN_STREAMS = (Stream.TOKEN_SELECT, Stream.TOKEN_ROLE, Stream.TOKEN_PICK)


def _random_count(ids, keys, can, special_ids, vocab_size, pool, mask_id, mix, count) -> Corruption:
    """:func:`random_mask` (count mode), any device: exactly ``count`` of the eligible tokens per row."""
    ok = eligible_in_vocab(ids, special_ids, vocab_size)
    if can is not None:
        ok = ok & can
    draws = keyed.bits32(keys, ids.shape[1], _TOKEN_STREAMS)  # select, role, replacement in one hashing pass
    selected = select_count(ok, keyed.unit(draws[0]), count)
    return apply_mix(
        ids, selected, keys, mask_id=mask_id, pool=pool, mix=mix, role_u=keyed.unit(draws[1]), pick=draws[2]
    )


def _role_cuts(T: int, p_mask: float, p_rand: float) -> tuple[int, int]:
    """Thresholds on a draw uniform on [0, T): below the first it is masked, below the second replaced."""
    return int(T * p_mask), min(int(T * (p_mask + p_rand)), T)


def check_mix(mix) -> tuple[float, float, float]:
    p_mask, p_rand, p_keep = (check_prob("mix entry", p) for p in mix)
    if abs(p_mask + p_rand + p_keep - 1.0) > 1e-6:
        raise ValueError(f"mix must sum to 1, got {mix}")
    return p_mask, p_rand, p_keep


def _pick(b, lo: int, hi: int, size: int):
    """Uniform index in [0, size) from int64 draws uniform on [lo, hi) (multiply-shift: bias below
    size / (hi - lo))."""
    return (b - lo) * size // max(hi - lo, 1)


def _random_mask_np(ids, b, can, special_ids, vocab_size, pool, mask_id, T, cut) -> Corruption:
    """:func:`random_mask` (prob mode) on the CPU: one dense compare, then work on the candidates only."""
    idn = np.ascontiguousarray(ids.numpy())
    flat = idn.reshape(-1)
    bu = b.numpy().view(np.uint32).reshape(-1)
    cand = np.flatnonzero(bu < T) if T < 2**32 else np.arange(bu.size)
    ok = eligible_in_vocab(flat[cand], special_ids, vocab_size)
    if can is not None:
        ok &= np.broadcast_to(can.numpy(), idn.shape).reshape(-1)[cand].astype(bool, copy=False)
    cand = cand[ok]
    bc = bu[cand].astype(np.int64)
    m = bc < cut[0]
    r = ~m & (bc < cut[1])
    return _np_record(idn, cand, m, r, mask_id, pool.numpy()[_pick(bc[r], cut[0], cut[1], len(pool))])


def _kernel_data(ids, keys, can) -> tuple:
    """The per-batch arguments of the token kernels as numpy views: ids [B, L], keys [B], the position counter
    [L] and ``can`` [B, L] bool ([0, 0] when None)."""
    if can is None:
        can = _NO_CAN
    else:
        can = can.numpy() if can.shape == ids.shape else np.broadcast_to(can.numpy(), ids.shape)
        can = np.ascontiguousarray(can, dtype=bool)
    idn = ids.numpy()
    return idn, keys.numpy(), keyed.np_counter(idn.shape[1]), can


_NO_CAN = np.zeros((0, 0), dtype=bool)


def _special_key(special_ids) -> tuple:
    """Special ids as a hashable tuple of ints (a tensor of them is read once, not element by element)."""
    return tuple(special_ids.tolist() if torch.is_tensor(special_ids) else special_ids)


class _Plan(NamedTuple):
    """The settings-only arguments of the token kernels, in the order of their last parameters (a test checks
    that order against the kernels' signatures)."""

    bits: np.ndarray
    special: np.ndarray
    steps: np.ndarray
    P: int
    T: int
    cut0: int
    cut1: int
    mask_id: int


@functools.lru_cache(maxsize=64)
def _kernel_plan(prob: float, mix: tuple, vocab_size: int, special_ids: tuple, mask_id: int, words: bool) -> _Plan:
    """The settings-only arguments of a token kernel, checked and built once per setting (a call then costs one
    cache lookup instead of ~15 us of checks and table lookups):

    - ``bits``: eligibility bitset over ids [0, 8 ceil(V / 8)), 1 unless special (little bit order; the few ids
      past V are eligible like any id outside the vocabulary, unless listed as special);
    - the special ids (for ids past the bitset);
    - ``steps``, ``P``: the replacement pool without its table (``_kernels._pool_at``);
    - T = floor(prob 2**32) and the two role cuts (on the selecting draw, or on the role stream for words);
    - the mask id.
    """
    check_prob("prob", prob)
    p_mask, p_rand, _ = check_mix(mix)
    P = len(replacement_pool(vocab_size, special_ids))  # raises when only specials are left
    special = np.array(sorted({int(s) for s in special_ids}), dtype=np.int64)
    keep = np.ones(-(-vocab_size // 8) * 8, dtype=bool)
    keep[special[(special >= 0) & (special < len(keep))]] = False
    in_vocab = special[(special >= 0) & (special < vocab_size)]
    steps = in_vocab - np.arange(len(in_vocab))
    T = int(prob * 2**32)
    cut0, cut1 = _role_cuts(2**32 if words else T, p_mask, p_rand)
    return _Plan(np.packbits(keep, bitorder="little"), special, steps, P, T, cut0, cut1, mask_id)


def _kernel_record(out) -> Corruption:
    """Corruption from a token kernel's (inputs, targets, selected, kind) arrays; every selected position weighs
    1, so ``weights`` is None."""
    inputs, targets, selected, kind = map(torch.from_numpy, out)
    return Corruption(inputs, targets, selected, None, kind)


def _np_record(idn: np.ndarray, flat: np.ndarray, m: np.ndarray, r: np.ndarray, mask_id: int, drawn) -> Corruption:
    """The Corruption of a CPU path: selected flat positions ``flat``, of which ``m`` become the mask token and
    ``r`` the ``drawn`` replacements; the rest stay unchanged."""
    inputs, targets = idn.copy(), np.full_like(idn, IGNORE_INDEX)
    kind, selected = np.zeros(idn.shape, np.int8), np.zeros(idn.shape, bool)
    fi, fk = inputs.reshape(-1), kind.reshape(-1)
    targets.reshape(-1)[flat] = idn.reshape(-1)[flat]
    selected.reshape(-1)[flat] = True
    fk[flat] = UNCHANGED
    fk[flat[m]] = MASKED
    fk[flat[r]] = RANDOM
    fi[flat[m]] = mask_id
    fi[flat[r]] = drawn
    return Corruption(*map(torch.from_numpy, (inputs, targets, selected)), None, torch.from_numpy(kind))


def _random_mask_torch(ids, b, can, special_ids, vocab_size, pool, mask_id, T, cut) -> Corruption:
    """:func:`random_mask` (prob mode), dense, any device: the same arithmetic as :func:`_random_mask_np`."""
    ok = eligible_in_vocab(ids, special_ids, vocab_size)
    if can is not None:
        ok = ok & can
    b = b.long() & 0xFFFFFFFF
    selected = ok & (b < T)
    as_mask = selected & (b < cut[0])
    as_rand = selected & ~as_mask & (b < cut[1])
    pick = _pick(b.clamp(cut[0], max(cut[1] - 1, cut[0])), cut[0], cut[1], len(pool))
    inputs = torch.where(as_rand, pool.to(ids.device)[pick].to(ids.dtype), ids.masked_fill(as_mask, mask_id))
    kind = selected.to(torch.int8).mul_(UNCHANGED).masked_fill_(as_mask, MASKED).masked_fill_(as_rand, RANDOM)
    targets = ids.masked_fill(~selected, IGNORE_INDEX)
    return Corruption(inputs, targets, selected, None, kind)


# ---------------------------------------------------------------------------------------------------- words


def word_ids_from_offsets(offsets: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """Word id per token [B, L] (-1 on special tokens) from character offsets [B, L, 2], Hugging Face's rule.

    A token starts a new word when it does not start where the previous token ended, or the previous token was
    special (``DataCollatorForLanguageModeling._calc_word_ids_and_prob_mask``, transformers 5.x). So "hello,"
    is one word, "hello ," two.
    """
    special = special.bool()
    if _backend.path(offsets) == "kernel" and (kern := jit.kernels()) is not None:
        return torch.from_numpy(kern.word_ids_from_offsets(offsets.numpy(), special.numpy()))
    starts, ends = offsets[..., 0], offsets[..., 1]
    prev_end = torch.cat([torch.full_like(ends[:, :1], -1), ends[:, :-1]], dim=1)
    prev_special = torch.cat([torch.zeros_like(special[:, :1]), special[:, :-1]], dim=1)
    new = ~special & ((starts != prev_end) | prev_special)
    wid = new.long().cumsum(dim=1)
    return torch.where(special, torch.full_like(wid, -1), wid)


def word_ids_from_starts(ids: torch.Tensor, starts_table: torch.Tensor, can: torch.Tensor) -> torch.Tensor:
    """Word id per token [B, L] (-1 where ``can`` is False) from a vocabulary table [V] bool that says which
    tokens begin a word (WordPiece: no ``##``; byte-level BPE: a leading space symbol). A token after an
    ineligible one also begins a word."""
    begins = starts_table.to(ids.device)[ids.clamp(0, len(starts_table) - 1)]
    prev_can = torch.cat([torch.zeros_like(can[:, :1]), can[:, :-1]], dim=1)
    starts = can & (begins | ~prev_can)
    wid = starts.long().cumsum(dim=1)
    return torch.where(can, wid, torch.full_like(wid, -1))


def word_starts(word_ids: torch.Tensor, can: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L] bool: the first token of each word. ``word_ids`` < 0 and ``can == False`` are not in any
    word."""
    inw = word_ids >= 0 if can is None else (word_ids >= 0) & can
    prev = torch.cat([torch.full_like(word_ids[:, :1], -2), word_ids[:, :-1]], dim=1)
    prev_in = torch.cat([torch.zeros_like(inw[:, :1]), inw[:, :-1]], dim=1)
    return inw & ((word_ids != prev) | ~prev_in)


def word_index(starts: torch.Tensor, inword: torch.Tensor) -> torch.Tensor:
    """Ordinal of each token's word in its row [B, L] (0, 1, ...), -1 outside words."""
    w = starts.long().cumsum(dim=1) - 1
    return torch.where(inword, w, torch.full_like(w, -1))


def spread_from_starts(values: torch.Tensor, starts: torch.Tensor, inword: torch.Tensor) -> torch.Tensor:
    """Copy ``values`` [B, L] from each word's first token onto all its tokens (O(L): running max of start
    index)."""
    pos = torch.arange(starts.shape[1], device=starts.device).expand_as(starts)
    src = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=1).values
    return values.gather(1, src)


def whole_word_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    word_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    count: int | torch.Tensor | None = None,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    can: torch.Tensor | None = None,
) -> Corruption:
    """Whole-word masking: select each word with ``prob`` (or exactly ``count`` words per row); mask all its
    tokens.

    ``word_ids`` [B, L]: word id per token, -1 for tokens in no word (specials, padding). Consecutive tokens
    with the same id form one word. The mask/random/keep ``mix`` is drawn per token, as in BERT's
    ``create_pretraining_data.py``; Hugging Face's whole-word collator forces mix=(1, 0, 0).

    Draws are integer compares on keyed uint32 streams: a word is chosen when ``Stream.TOKEN_SELECT`` at its
    first token is below ``floor(prob 2**32)``; a chosen token is masked / replaced / kept by
    ``Stream.TOKEN_ROLE`` against ``mix``; a replacement is ``pool[Stream.TOKEN_PICK % |pool|]``. On the CPU
    (rate mode) the role and replacement streams are hashed only at the selected tokens (numpy); elsewhere
    densely in torch, with identical results.
    """
    prob, mask_id, count = check_prob("prob", prob), check_token_id("mask_id", mask_id), check_count(count)
    keys = _row_keys(ids, keys)
    if word_ids.shape != ids.shape:
        raise ValueError(f"word_ids shape {tuple(word_ids.shape)} does not match ids shape {tuple(ids.shape)}")
    path = _backend.path(ids)
    if count is None and path == "kernel" and (kern := jit.kernels()) is not None:
        plan = _kernel_plan(float(prob), tuple(mix), int(vocab_size), _special_key(special_ids), int(mask_id), True)
        return _kernel_record(kern.whole_word_mask(*_kernel_data(ids, keys, can), word_ids.numpy(), *plan))
    p_mask, p_rand, _ = check_mix(mix)
    cut = _role_cuts(2**32, p_mask, p_rand)  # role thresholds on Stream.TOKEN_ROLE
    T = int(prob * 2**32)
    pool = replacement_pool(vocab_size, special_ids, ids.device)
    if count is None and path != "torch":
        return _whole_word_np(ids, keys, word_ids, can, special_ids, vocab_size, pool, mask_id, T, cut)
    return _whole_word_torch(ids, keys, word_ids, can, special_ids, vocab_size, pool, mask_id, T, cut, count)


def _whole_word_torch(ids, keys, word_ids, can, special_ids, vocab_size, pool, mask_id, T, cut, count) -> Corruption:
    """:func:`whole_word_mask`, dense, any device (and count mode everywhere): the same draws as
    :func:`_whole_word_np`."""
    ok = eligible_in_vocab(ids, special_ids, vocab_size) & (word_ids >= 0)
    if can is not None:
        ok = ok & can
    starts = word_starts(word_ids, ok)
    draws = keyed.bits(keys, ids.shape[1], _TOKEN_STREAMS)  # word draw (read at its first token), role, replacement
    if count is None:
        chosen = (draws[0] < T) & starts
    else:
        chosen = select_count(starts, (draws[0] >> 8).float() / 2**24, count)
    selected = spread_from_starts(chosen, starts, ok) & ok
    as_mask = selected & (draws[1] < cut[0])
    as_rand = selected & ~as_mask & (draws[1] < cut[1])
    drawn = pool.to(ids.device)[draws[2] % len(pool)].to(ids.dtype)
    inputs = torch.where(as_rand, drawn, ids.masked_fill(as_mask, mask_id))
    kind = selected.to(torch.int8).mul_(UNCHANGED).masked_fill_(as_mask, MASKED).masked_fill_(as_rand, RANDOM)
    return Corruption(inputs, ids.masked_fill(~selected, IGNORE_INDEX), selected, None, kind)


def _whole_word_np(ids, keys, word_ids, can, special_ids, vocab_size, pool, mask_id, T, cut) -> Corruption:
    """:func:`whole_word_mask` (prob mode) on the CPU: dense word selection, then role and replacement draws
    hashed only at the selected tokens (the same stream values as the dense path)."""
    idn, wid = np.ascontiguousarray(ids.numpy()), np.ascontiguousarray(word_ids.numpy())
    B, L = idn.shape
    ok = eligible_in_vocab(idn, special_ids, vocab_size) & (wid >= 0)
    if can is not None:
        ok &= np.broadcast_to(can.numpy(), idn.shape).astype(bool, copy=False)
    same = np.zeros_like(ok)  # continues the previous token's word
    same[:, 1:] = (wid[:, 1:] == wid[:, :-1]) & ok[:, :-1]
    starts = ok & ~same
    chosen = starts & (keyed.np_bits(keys, L, Stream.TOKEN_SELECT) < T)
    pos = np.where(starts, np.arange(L), 0)
    np.maximum.accumulate(pos, axis=1, out=pos)  # each token's word start
    flat = np.flatnonzero(chosen.reshape(-1)[(pos + np.arange(0, B * L, L)[:, None]).reshape(-1)] & ok.reshape(-1))
    rows, cols = np.divmod(flat, L)
    role = keyed.np_bits_at(keys, rows, cols, L, Stream.TOKEN_ROLE).astype(np.int64)
    m, r = role < cut[0], (role >= cut[0]) & (role < cut[1])
    drawn = pool.numpy()[keyed.np_bits_at(keys, rows[r], cols[r], L, Stream.TOKEN_PICK) % len(pool)]
    return _np_record(idn, flat, m, r, mask_id, drawn)
