"""Compiled CPU kernels (numba) for the mask builders that run once per batch in a data pipeline.

Optional: installed with ``pip install masklab[fast]`` and loaded by :func:`masklab.corrupt.jit.kernels` (off
with ``MASKLAB_JIT=0``). Each kernel is one pass of plain loops over the batch that gives **bit for bit** the
result of the vectorized numpy/torch code beside it (tests/corrupt/test_kernels.py), from the same keyed stream
(:mod:`masklab.corrupt.keyed`): ``bits[j] = lowbias32(derive(key, stream) + lowbias32(2 j + 1))``. numpy pays
about 1-5 us per call on these small arrays and the vectorized paths need 20-60 calls; a kernel needs one.

Each row is hashed first in a branch-free uint32 loop (which LLVM vectorizes), then read in a second loop
that only acts on the few selected positions. Draws are compared as int64 (numba compares uint32 with int64
through float64).
"""

from __future__ import annotations

import numba
import numpy as np

from masklab.corrupt.keyed import Stream

_U32 = numba.uint32
# the streams the kernels hash, as plain ints (numba freezes them into the compiled code)
_SELECT, _ROLE, _PICK = int(Stream.TOKEN_SELECT), int(Stream.TOKEN_ROLE), int(Stream.TOKEN_PICK)
_FRAME_START = int(Stream.FRAME_START)
KEPT, MASKED, RANDOM, UNCHANGED = 0, 1, 2, 3  # masklab.corrupt.record kinds
_jit = numba.njit(cache=True, nogil=True)


@numba.njit(cache=True, inline="always")
def _mix(x):
    """Wellons' lowbias32 on a uint32 (each step truncated back to 32 bits)."""
    x = _U32(x ^ (x >> _U32(16)))
    x = _U32(x * _U32(0x7FEB352D))
    x = _U32(x ^ (x >> _U32(15)))
    x = _U32(x * _U32(0x846CA68B))
    return _U32(x ^ (x >> _U32(16)))


@numba.njit(cache=True, inline="always")
def _derive(key, salt):
    """keyed.derive for one key (any integer: its low 32 bits) and salt."""
    return _mix(_U32(_mix(_U32(_U32(key & 0xFFFFFFFF) + _U32(0x9E3779B9) + _U32(salt))) ^ _U32(0x9E3779B9)))


@numba.njit(cache=True, inline="always")
def _hash_row(k, ctr, n, out):
    """out[j] = lowbias32(k + ctr[j]) for j < n, as int64."""
    for j in range(n):
        out[j] = _mix(_U32(k + ctr[j]))


@numba.njit(cache=True)
def _outside_ok(t, special):
    """An id beyond the eligibility bitset is eligible unless it is listed as special. Kernels test eligibility
    as ``bits[t >> 3] >> (t & 7) & 1 if 0 <= t < 8 |bits| else _outside_ok(t, special)``, written out: an
    inlined function that takes arrays costs reference counting at every token (2-3x slower)."""
    for s in special:
        if t == s:
            return False
    return True


@numba.njit(cache=True)
def _pool_at(k, steps):
    """The k-th non-special id of the vocabulary (``tokens.replacement_pool(...)[k]``) without the pool table:
    ``k`` plus the number of specials at or below the answer, found as the number of ``steps[i] = s_i - i``
    (sorted distinct in-vocabulary specials s_i) that are <= k."""
    return k + np.searchsorted(steps, k, side="right")


@numba.njit(cache=True, inline="always")
def _outputs(ids):
    """inputs (a copy of ids), targets (-100), selected (False), kind (0)."""
    B, L = ids.shape
    return ids.copy(), np.full((B, L), -100, dtype=ids.dtype), np.zeros((B, L), np.bool_), np.zeros((B, L), np.int8)


@_jit
def example_keys(seed, epoch, index):
    """keyed.example_keys: derive(derive(seed, epoch), index[i]) as uint32 in int64 [len(index)]."""
    h = _derive(seed, epoch)
    out = np.empty(index.shape[0], dtype=np.int64)
    for i in range(index.shape[0]):
        out[i] = _derive(h, index[i])
    return out


@_jit
def random_mask(ids, keys, ctr, can, bits, special, steps, P, T, cut0, cut1, mask_id):
    """tokens.random_mask, rate mode. ``ids`` [B, L]; ``keys`` [B]; ``ctr`` lowbias32(2 j + 1) [L]; ``can``
    [B, L] bool, or [0, 0] for none; ``bits`` the eligibility bitset (``tokens._kernel_plan``); ``steps`` and
    ``P`` the replacement pool (:func:`_pool_at`). One draw per position: it selects when < T, masks when
    < cut0, and replaces with ``pool[(b - cut0) P // (cut1 - cut0)]`` when < cut1. Returns inputs, targets,
    selected, kind."""
    B, L = ids.shape
    inputs, targets, selected, kind = _outputs(ids)
    span, W = max(cut1 - cut0, 1), bits.shape[0] * 8
    draw, cand = np.empty(L, dtype=np.int64), np.empty(L, dtype=np.int64)
    for b in range(B):
        _hash_row(_derive(keys[b], _SELECT), ctr, L, draw)
        n = 0
        for j in range(L):  # branch-free compaction of the ~prob share of candidates
            cand[n] = j
            n += draw[j] < T
        for i in range(n):
            j = cand[i]
            x = draw[j]
            t = ids[b, j]
            if (can.shape[0] > 0 and not can[b, j]) or not (
                (bits[t >> 3] >> (t & 7)) & 1 if 0 <= t < W else _outside_ok(t, special)
            ):
                continue
            selected[b, j], targets[b, j] = True, t
            if x < cut0:
                inputs[b, j], kind[b, j] = mask_id, MASKED
            elif x < cut1:
                inputs[b, j], kind[b, j] = _pool_at((x - cut0) * P // span, steps), RANDOM
            else:
                kind[b, j] = UNCHANGED
    return inputs, targets, selected, kind


@_jit
def whole_word_mask(ids, keys, ctr, can, word_ids, bits, special, steps, P, T, cut0, cut1, mask_id):
    """tokens.whole_word_mask, rate mode. A word (consecutive eligible tokens with one word id >= 0) is chosen
    when ``Stream.TOKEN_SELECT`` at its first token is < T; each of its tokens is masked / replaced / kept by
    ``Stream.TOKEN_ROLE`` against ``cut0``, ``cut1``, and a replacement is ``pool[Stream.TOKEN_PICK % P]``.
    Arguments as in :func:`random_mask`, plus ``word_ids`` [B, L]. Returns inputs, targets, selected, kind."""
    B, L = ids.shape
    inputs, targets, selected, kind = _outputs(ids)
    draw, W = np.empty(L, dtype=np.int64), bits.shape[0] * 8
    for b in range(B):
        _hash_row(_derive(keys[b], _SELECT), ctr, L, draw)
        k1, k2 = _derive(keys[b], _ROLE), _derive(keys[b], _PICK)
        prev_ok, chosen = False, False
        for j in range(L):
            w, t = word_ids[b, j], ids[b, j]
            ok = (
                w >= 0
                and (can.shape[0] == 0 or can[b, j])
                and ((bits[t >> 3] >> (t & 7)) & 1 if 0 <= t < W else _outside_ok(t, special))
            )
            if ok and not (prev_ok and w == word_ids[b, j - 1]):  # the first token of a word
                chosen = draw[j] < T
            prev_ok = ok
            if not (ok and chosen):
                continue
            selected[b, j], targets[b, j] = True, t
            role = np.int64(_mix(_U32(k1 + ctr[j])))
            if role < cut0:
                inputs[b, j], kind[b, j] = mask_id, MASKED
            elif role < cut1:
                inputs[b, j], kind[b, j] = _pool_at(np.int64(_mix(_U32(k2 + ctr[j]))) % P, steps), RANDOM
            else:
                kind[b, j] = UNCHANGED
    return inputs, targets, selected, kind


@_jit
def word_ids_from_offsets(offsets, special):
    """tokens.word_ids_from_offsets: a non-special token starts a word when it does not start where the previous
    token ended or the previous token is special; word ids count words from 1, -1 on special tokens."""
    B, L = special.shape
    wid = np.full((B, L), -1, dtype=np.int64)
    for b in range(B):
        w, prev_end, prev_special = 0, -1, False
        for j in range(L):
            if not special[b, j]:
                w += offsets[b, j, 0] != prev_end or prev_special
                wid[b, j] = w
            prev_end, prev_special = offsets[b, j, 1], special[b, j]
    return wid


@_jit
def static_spans(keys, ctr, sizes, T, p_over_m, M, min_masks, hf_cap):
    """frames.span_mask's wav2vec2 default: per row, n = floor(size p / M + eps) spans of exactly M frames
    (eps from ``Stream.FRAME_START`` at column T, as in _compute_mask_indices), starting at the n smallest start
    scores (the same stream, ties to the earlier start) among the size - M + 1 starts where a span fits;
    overlap allowed.

    The n smallest are found among the starts whose score lies below a threshold that the n-th smallest
    exceeds with probability under 1e-9 (n + 6 sqrt(n) + 8 expected below it); if too few lie below, among all
    starts. Each candidate is ``score << 31 | start`` (ties go to the earlier start), and one partition finds
    the n-th. Returns bool [B, T]."""
    B = keys.shape[0]
    mask = np.zeros((B, T), dtype=np.bool_)
    score, cand = np.empty(T + 1, dtype=np.int64), np.empty(T + 1, dtype=np.int64)
    for b in range(B):
        _hash_row(_derive(keys[b], _FRAME_START), ctr, T + 1, score)
        n = int(sizes[b] * p_over_m + (score[T] >> 8) * (1.0 / (1 << 24)))
        if min_masks > 0:
            n = max(n, min_masks)
        if hf_cap and n * M > T:
            n = T // M
        n_cand = max(sizes[b] - (M - 1), 0)
        n = min(n, n_cand)
        if n == 0:
            continue
        if n == n_cand:  # every start
            for j in range(n_cand + M - 1):
                mask[b, j] = True
            continue
        tau = np.int64(min((n + 6.0 * np.sqrt(n) + 8.0) / n_cand, 1.0) * 4294967296.0)
        c = 0
        for j in range(n_cand):  # branch-free compaction of the scores below tau
            cand[c] = (score[j] << 31) | j  # < 2**63: starts < 2**31
            c += score[j] < tau
        if c < n:
            for j in range(n_cand):
                cand[j] = (score[j] << 31) | j
            c = n_cand
        kth = np.partition(cand[:c], n - 1)[n - 1]
        for i in range(c):
            if cand[i] <= kth:
                j = cand[i] & 0x7FFFFFFF
                for t in range(j, j + M):  # (a slice would build an array view per span)
                    mask[b, t] = True
    return mask
