"""Counter-based, keyed random numbers: the randomness behind every masklab mask.

A mask for example ``i`` is a pure function of ``(seed, epoch, i)`` and the position inside the example, so it
does not depend on batch composition, padding, device, DataLoader workers or any global RNG state. The stream is
a 32-bit integer hash (Wellons' ``lowbias32``) of the example key and a counter, evaluated on whole tensors at once,
so there is no per-row Python loop and no ``torch.Generator`` per example.

All values are uint32 numbers held in int64 tensors; every multiply is split into 16-bit halves so nothing
overflows int64.
"""

from __future__ import annotations

import torch

__all__ = ["example_keys", "bits", "uniform", "uniform64", "derive"]

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x < 2**32, without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _as_tensor(v, device=None) -> torch.Tensor:
    return torch.as_tensor(v, dtype=torch.int64, device=device) & _M32


def derive(keys: torch.Tensor, *salts: int | torch.Tensor) -> torch.Tensor:
    """A new key per element of ``keys`` for each salt (a step number, a stream name hash, ...)."""
    h = keys & _M32
    for s in salts:
        h = _mix32((h + _GOLDEN + _as_tensor(s, h.device)) & _M32)
        h = _mix32(h ^ _GOLDEN)
    return h


def example_keys(seed: int, epoch: int | torch.Tensor, index, device=None) -> torch.Tensor:
    """One key per example, from (seed, epoch, example index). ``index``: int sequence or tensor [B]."""
    index = _as_tensor(index, device)
    base = _as_tensor(seed, index.device)
    return derive(base, epoch, index)


def bits(keys: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """Uniform uint32 values [B, n] (in int64): element j of row b depends only on (keys[b], stream, j)."""
    ctr = torch.arange(n, device=keys.device, dtype=torch.int64)
    k = derive(keys.reshape(-1), stream)[:, None]
    h = _mix32((k ^ _mix32((ctr * 2 + 1) & _M32)) & _M32)
    return _mix32((h + k) & _M32)


def uniform(keys: torch.Tensor, n: int, stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Uniform floats in [0, 1) with 24-bit resolution, shape [B, n]."""
    return (bits(keys, n, stream) >> 8).to(dtype) * (1.0 / (1 << 24))


def uniform64(keys: torch.Tensor, n: int, stream: int = 0) -> torch.Tensor:
    """Uniform float64 in [0, 1) with 53-bit resolution, shape [B, n] (two 32-bit draws per value)."""
    hi = bits(keys, n, 2 * stream + 1) >> 5  # 27 bits
    lo = bits(keys, n, 2 * stream + 2) >> 6  # 26 bits
    return (hi.double() * (1 << 26) + lo.double()) * (1.0 / (1 << 53))
