"""Counter-based, keyed random numbers: the randomness behind every masklab mask (the only implementation).

A mask for example ``i`` is a pure function of ``(seed, epoch, i)`` and the position inside the example, so it
does not depend on batch composition, padding, device, DataLoader workers or any global RNG state. The stream is
a 32-bit integer hash (Wellons' ``lowbias32``) of the example key and a counter, evaluated on whole arrays at once,
so there is no per-row Python loop and no ``torch.Generator`` per example:

    k        = derive(key, stream)
    bits[j]  = lowbias32(k + lowbias32(2 j + 1))                          (all arithmetic mod 2**32)
    derive(h, s) = lowbias32(lowbias32(h + 0x9E3779B9 + s) ^ 0x9E3779B9)   (once per salt)

``k`` is a well-mixed 32-bit key per (example, stream) and ``lowbias32(2 j + 1)`` a fixed pseudo-random table, so
each element costs one ``lowbias32`` (SplitMix-style: a finalizer over distinct, scrambled counters).

Keys and the public results of :func:`bits`, :func:`derive` and :func:`example_keys` are uint32 numbers held in
int64 tensors. On the CPU the hash runs in numpy ``uint32`` arithmetic on the tensors' memory (numpy's per-call
overhead is a fraction of torch's, and these arrays are small); on other devices it runs in torch int32
arithmetic (wrapping multiplies and adds, ``(x >> s) & mask`` for the logical shift). Both give the bits of the
mod-2**32 definition above. :func:`bits32` returns the int32 form (the two's complement of the uint32) for hot
paths; :func:`unit` turns it into floats. tests/corrupt/test_keyed.py checks both backends against a plain int64
reference of the formulas above.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence

import numpy as np
import torch

from masklab.corrupt import jit

__all__ = [
    "Stream",
    "example_keys",
    "bits",
    "bits32",
    "unit",
    "uniform",
    "uniform64",
    "derive",
    "hash_positions",
    "np_bits",
    "np_bits_at",
    "np_counter",
]

_M32 = 0xFFFFFFFF


class Stream(enum.IntEnum):
    """The stream (salt) of every keyed draw a corruption makes: ``bits(keys, n, Stream.X)`` and friends.

    One entry per draw, so that two draws share numbers only where a comment says so. :func:`uniform64` with
    stream ``s`` reads streams ``2 s + 1`` and ``2 s + 2``. The values are part of every mask: changing one
    changes the masks of every run.
    """

    TOKEN_SELECT = 0  # tokens: the selecting draw per position (whole words: read at a word's first token)
    TOKEN_ROLE = 1  # tokens, and every mask built on apply_mix: mask / random / keep per token
    TOKEN_PICK = 2  # tokens: the random replacement from the pool
    DIFFUSION_T = 7  # diffusion.sample_t: the time t (antithetic: per pair key; stratified: the batch offset)
    DIFFUSION_MASK = 8  # diffusion: the per-token mask draw of mdm_noise and of MDiff4STR's random strategy
    MDIFF4STR = 9  # MDiff4STR (uniform64): strategy, t, block offset
    MDIFF4STR_REPLACE = 10  # MDiff4STR: which visible tokens are replaced
    MDIFF4STR_PICK = 11  # MDiff4STR: the replacement from the pool
    SPAN_LENGTH = 20  # spans (uniform64): span lengths by inverse CDF
    SPAN_ORDER = 21  # spans: the shuffle that moves the cut span off the end
    SPAN_PLACE = 22  # spans: slots (no_overlap) or, as uniform64, independent starts (overlap)
    SPAN_ROLE = 23  # spans: one role draw per span
    NGRAM_START = 30  # ngram: unit starts
    NGRAM_ROLE = 31  # ngram: one role draw per unit, read at its first token
    MEAP_SELECT = 40  # meap: which tokens are masked
    ELECTRA_SELECT = 50  # replace.electra_mask: the generator's positions
    ELECTRA_GUMBEL = 51  # replace.sample_replacements (uniform64 on per-position keys): Gumbel noise
    ELECTRA_MULTINOMIAL = 52  # replace.sample_replacements (uniform64 on per-position keys): inverse CDF
    GUIDED_GUMBEL = 60  # guided (uniform64): Gumbel-top-k of proportional mode
    GUIDED_REST = 61  # guided: the uniformly chosen rest of the budget
    FRAME_START = 0x57A  # frames: span start scores, then eps in column T (order and uniform read the same bits)
    FRAME_SLOT = 0x57B  # frames, no_overlap: stars-and-bars slots
    FRAME_LENGTH = 0x1E4  # frames: span lengths (the first uniform of normal's Box-Muller)
    FRAME_LENGTH2 = 0x1E5  # frames: the second uniform of normal's Box-Muller
    FRAME_EQUALIZE = 0xEC0  # frames, same_count: the order in which runs are kept
    PATCH_RANDOM = 0x5A7C  # patches.random_patches (MAE)
    BEIT_BLOCKS = 0xBE17  # patches.beit_blocks: area, aspect, top, left of each candidate
    BEIT_FILL = 0xF111  # patches.block_patches: the random fill when candidates cover too little
    SIMMIM = 0x5133  # patches.simmim_patches: coarse cells
    COLOR_NOISE = 0xC010  # patches.colored_noise: each row's bank slice, crop offset and flips (ColorMAE)
    HPM = 0x4B3  # patches.hpm_patches: the random share
    REFERRING = 0x0E7  # patches.referring_patches: ranks inside and outside the region
    ATTN_ANNEAL = 0xA77  # models.pretrained.annealed_attention: DiffuGPT's random visible pairs per step
    BATCH = 0x5EED  # batch_key: the key of a batch composition; sample.generate.row_keys: a row's key from its seed
    DATA_ORDER = 99  # train.loop: the permutation of the training examples in each epoch


def _s32(c: int) -> int:
    """A uint32 Python int -> the int32 with the same bits."""
    c &= _M32
    return c - (1 << 32) if c >= (1 << 31) else c


_GOLDEN = _s32(0x9E3779B9)


def _to_i32(x: torch.Tensor) -> torch.Tensor:
    """Integers (any int dtype) -> int32 holding their low 32 bits."""
    if x.dtype == torch.int32:
        return x
    x = x.long() & _M32
    return torch.where(x >= (1 << 31), x - (1 << 32), x).to(torch.int32)


_U16, _U15, _U8 = np.uint32(16), np.uint32(15), np.uint32(8)
_UC1, _UC2, _UG = np.uint32(0x7FEB352D), np.uint32(0x846CA68B), np.uint32(0x9E3779B9)


def _np_mix(x: np.ndarray) -> np.ndarray:
    """lowbias32 on a uint32 ndarray, in place."""
    x ^= x >> _U16
    x *= _UC1
    x ^= x >> _U15
    x *= _UC2
    x ^= x >> _U16
    return x


def _np_u32(x) -> np.ndarray:
    """Integers (CPU tensor, array or int) -> a new uint32 ndarray of their low 32 bits."""
    if torch.is_tensor(x):
        x = x.numpy()
    return np.asarray(x).astype(np.uint32)  # integer casts wrap: the low 32 bits


def _np_derive(h: np.ndarray, salt) -> np.ndarray:
    """One salt on uint32 keys (broadcasting ``h`` against an array ``salt``); returns a new array."""
    h = h + _UG + (np.uint32(int(salt) & _M32) if isinstance(salt, int) else salt)
    _np_mix(h)
    h ^= _UG
    return _np_mix(h)


@functools.lru_cache(maxsize=64)
def np_counter(n: int) -> np.ndarray:
    """lowbias32(2 j + 1) for j < n as uint32 [n], cached per length (read only)."""
    c = _np_mix(np.arange(n, dtype=np.uint32) * np.uint32(2) + np.uint32(1))
    c.flags.writeable = False
    return c


def _cpu(t: torch.Tensor) -> bool:
    return t.device.type == "cpu"


@functools.lru_cache(maxsize=8)
def _k(device: str) -> tuple[torch.Tensor, ...]:
    """0-dim int32 constants per device (a Python scalar costs a wrap and a copy per op)."""
    return tuple(
        torch.tensor(v, dtype=torch.int32, device=device)
        for v in (16, 15, 8, 0xFFFF, 0x1FFFF, 0xFFFFFF, _s32(0x7FEB352D), _s32(0x846CA68B))
    )


def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on an int32 tensor, in place (the caller owns ``x``)."""
    s16, s15, _, m16, m17, _, c1, c2 = _k(str(x.device))
    x ^= (x >> s16).bitwise_and_(m16)
    x *= c1
    x ^= (x >> s15).bitwise_and_(m17)
    x *= c2
    x ^= (x >> s16).bitwise_and_(m16)
    return x


def _salt(s, device) -> torch.Tensor | int:
    if torch.is_tensor(s):
        return _to_i32(s.to(device))
    return _s32(int(s))


def _derive(h: torch.Tensor, salt: torch.Tensor | int) -> torch.Tensor:
    """One salt on int32 keys (broadcasts ``h`` against a tensor ``salt``); returns a new tensor."""
    h = (h + _GOLDEN) + salt
    h = _mix(h)
    h ^= _GOLDEN
    return _mix(h)


@functools.lru_cache(maxsize=64)
def _counter(n: int, device: str) -> torch.Tensor:
    """lowbias32(2 j + 1) for j < n as int32 [n] (the per-position half of :func:`bits`), cached per length."""
    return _mix(torch.arange(n, dtype=torch.int32, device=device) * 2 + 1)


def derive(keys: torch.Tensor, *salts: int | torch.Tensor) -> torch.Tensor:
    """A new key per element of ``keys`` for each salt (a step number, a stream name hash, ...).

    Salts may be ints or integer tensors that broadcast against ``keys``; the result is uint32 in int64.
    """
    keys = torch.as_tensor(keys)
    if _cpu(keys):
        shape = torch.broadcast_shapes(keys.shape, *(s.shape for s in salts if torch.is_tensor(s)))
        h = np.atleast_1d(_np_u32(keys))  # numpy 0-d results would be scalars
        for s in salts:
            h = _np_derive(h, np.atleast_1d(_np_u32(s)) if torch.is_tensor(s) else int(s))
        return torch.from_numpy(h.astype(np.int64).reshape(shape))
    return _torch_derive(keys, *salts)


def _torch_derive(keys: torch.Tensor, *salts) -> torch.Tensor:
    """:func:`derive` in torch int32 arithmetic (any device)."""
    h = _to_i32(keys)
    for s in salts:
        h = _derive(h, _salt(s, h.device))
    return h.long() & _M32


def example_keys(seed: int, epoch: int | torch.Tensor, index, device=None) -> torch.Tensor:
    """One key per example, from (seed, epoch, example index). ``index``: int sequence or tensor [B].

    Returns uint32 keys in an int64 tensor shaped like ``index``.
    """
    index = torch.as_tensor(index, dtype=torch.int64, device=device)
    if _cpu(index) and not torch.is_tensor(seed) and not torch.is_tensor(epoch):
        if (kern := jit.kernels()) is not None:
            out = kern.example_keys(int(seed) & _M32, int(epoch) & _M32, index.numpy().reshape(-1))
            return torch.from_numpy(out.reshape(index.shape))
        h = np.full(index.numel(), int(seed) & _M32, dtype=np.uint32)
        h = _np_derive(_np_derive(h, int(epoch)), _np_u32(index.reshape(-1)))
        return torch.from_numpy(h.astype(np.int64).reshape(index.shape))
    seed = _s32(int(seed)) if not torch.is_tensor(seed) else _to_i32(seed.to(index.device))
    base = torch.full(index.shape, 0, dtype=torch.int32, device=index.device) + seed
    return derive(base, epoch, index)


def bits32(keys: torch.Tensor, n: int, stream: int | Sequence[int] = 0) -> torch.Tensor:
    """The keyed stream as int32 [B, n] (two's complement of the uint32 that :func:`bits` returns).

    Element j of row b depends only on (keys[b], stream, j). ``stream`` may be a sequence of S streams: one
    hashing pass then returns [S, B, n] (fewer, larger tensor ops).
    """
    many = isinstance(stream, Sequence) or (torch.is_tensor(stream) and stream.dim() > 0)
    if _cpu(keys):
        return torch.from_numpy(np_bits(keys, n, stream, many).view(np.int32))
    return _torch_bits32(keys, n, stream, many)


def _torch_bits32(keys: torch.Tensor, n: int, stream, many: bool) -> torch.Tensor:
    """:func:`bits32` in torch int32 arithmetic (any device; tests run it on the CPU against numpy)."""
    if many:  # (S, B, 1) keys, one per stream
        salt = torch.tensor([_s32(int(s)) for s in stream], dtype=torch.int32, device=keys.device)[:, None]
        k = _derive(_to_i32(keys.reshape(1, -1)), salt)[..., None]
    else:  # (B, 1): a Python salt saves a tensor and a broadcast
        k = _derive(_to_i32(keys.reshape(-1, 1)), _s32(int(stream)))
    return _mix(k + _counter(int(n), str(keys.device)))  # (S, B, n) or (B, n)


def np_bits_at(keys: torch.Tensor, rows: np.ndarray, cols: np.ndarray, n: int, stream: int) -> np.ndarray:
    """``bits32(keys, n, stream)[rows, cols]`` as uint32, hashing only those elements (sparse draws)."""
    k = _np_derive(_np_u32(keys.reshape(-1)), int(stream))
    return _np_mix(k[rows] + np_counter(int(n))[cols])


def np_bits(keys: torch.Tensor, n: int, stream, many: bool = False) -> np.ndarray:
    """:func:`bits32` of CPU ``keys`` as a uint32 ndarray [B, n] (or [S, B, n] for ``many`` streams)."""
    k = _np_u32(keys.reshape(-1))
    if many:
        k = _np_derive(k[None, :], np.array([int(s) & _M32 for s in stream], dtype=np.uint32)[:, None])
    else:
        k = _np_derive(k, int(stream))
    return _np_mix(k[..., None] + np_counter(int(n)))


def bits(keys: torch.Tensor, n: int, stream: int | Sequence[int] = 0) -> torch.Tensor:
    """Uniform uint32 values [B, n] in int64 (or [S, B, n] for S streams): see :func:`bits32`."""
    b = bits32(keys, n, stream)
    if _cpu(b):
        return torch.from_numpy(b.numpy().view(np.uint32).astype(np.int64))
    return b.long() & _M32


def unit(b: torch.Tensor) -> torch.Tensor:
    """int32 draws from :func:`bits32` -> float32 in [0, 1) with 24-bit resolution (the top 24 bits)."""
    if _cpu(b):
        u = (b.numpy().view(np.uint32) >> _U8).astype(np.float32)
        u *= np.float32(1.0 / (1 << 24))
        return torch.from_numpy(u)
    _, _, s8, _, _, m24, _, _ = _k(str(b.device))
    return (b >> s8).bitwise_and_(m24).float().mul_(1.0 / (1 << 24))


def uniform(keys: torch.Tensor, n: int, stream: int | Sequence[int] = 0, dtype=torch.float32) -> torch.Tensor:
    """Uniform floats in [0, 1) with 24-bit resolution, shape [B, n] (or [S, B, n]): ``(bits >> 8) / 2**24``."""
    u = unit(bits32(keys, n, stream))
    return u if dtype == torch.float32 else u.to(dtype)


def uniform64(keys: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """Uniform float64 in [0, 1) with 53-bit resolution, shape [B, n] (streams 2s+1 and 2s+2 per value)."""
    b = bits(keys, n, (2 * stream + 1, 2 * stream + 2))
    hi = b[0] >> 5  # 27 bits
    lo = b[1] >> 6  # 26 bits
    return (hi.double() * (1 << 26) + lo.double()) * (1.0 / (1 << 53))


def hash_positions(values: torch.Tensor) -> torch.Tensor:
    """``lowbias32(values[..., j] ^ lowbias32(2 j + 1))`` as uint32 in int64: a per-position hash of content
    (the low 32 bits of each value), used to key examples by their tokens when no index is given."""
    h = _mix(_to_i32(values) ^ _counter(values.shape[-1], str(values.device)))
    return h.long() & _M32


# The one key derivation. Training, evaluation and the collators all take their keys from these three functions,
# so the collator path and the objective path give the same masks for the same (seed, epoch, example index).
EVAL_EPOCH = 0xFFFF  # the "epoch" of held-out evaluation: disjoint from every training epoch in practice


def train_keys(seed: int, epoch: int, index, device=None) -> torch.Tensor:
    """Keys [B] of training examples ``index`` in ``epoch``: masks are keyed on (seed, epoch, example index)."""
    return example_keys(seed, epoch, index, device)


def eval_keys(seed: int, index, device=None) -> torch.Tensor:
    """Keys [B] of held-out examples ``index``: the same for every evaluation of a run with this seed."""
    return example_keys(seed, EVAL_EPOCH, index, device)


def batch_key(keys: torch.Tensor) -> torch.Tensor:
    """One key (0-d) for a batch, from its examples' keys [B]: a function of the batch's content keys only, so a
    collator and an objective that see the same examples derive the same batch key."""
    return derive(keys.sum() & _M32, Stream.BATCH)
