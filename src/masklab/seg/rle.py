"""COCO run-length encoding (RLE), byte-identical to pycocotools' compressed RLE, in numpy and torch.

Format (Lin et al. 2014, COCO; the reference is ``maskApi.c`` in cocodataset/cocoapi):

* A mask [H, W] is read in column-major (Fortran) order: down the first column, then the next.
* ``counts`` are the lengths of alternating runs, starting with a run of zeros (which may have length 0), so a
  mask that starts with a foreground pixel has ``counts[0] == 0``.
* The compressed string writes each count as a little-endian sequence of 5-bit groups, one ASCII character per
  group (``chr(48 + group)``, so characters ``'0'`` to ``'o'``); bit 5 (0x20) says another group follows and
  the value is signed (bit 4 of the last group is the sign). From the fourth count on (index ``i > 2``, not
  ``i >= 2``) the value written is the difference ``counts[i] - counts[i - 2]``, which keeps most values
  small.

Everything here is written from that description; no pycocotools code is used. Deliberate differences from
pycocotools, each a clear error instead of a silent result:

* ``rle_decode`` checks that the counts are non-negative and sum to H*W (pycocotools writes past the buffer or
  leaves garbage); malformed strings raise ``ValueError`` that names the character position.
* ``iou`` and ``merge`` refuse masks of different sizes (pycocotools returns -1 or an empty RLE).
* Decoded masks are ``bool`` [H, W] (pycocotools returns ``uint8``); use ``.astype(np.uint8)`` for a drop-in.

Functions accept one RLE (a dict) or a list of them; a list gives the batched result. Masks may be numpy
arrays or torch tensors; ``rle_encode`` of a tensor on an accelerator finds run boundaries there (a CPU tensor
shares memory with numpy and takes the numpy path). The numpy path finds changes on the C-order array a
64-bit word at a time and sorts only the change positions into column-major order; the counts text is built
as one byte buffer."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["rle_encode", "rle_decode", "area", "bbox", "iou", "merge", "merge_groups", "Runs"]

_MAX_GROUPS = 12  # 60 bits: more 5-bit groups than this in one value cannot come from a real mask


# --------------------------------------------------------------------------------------------- encoding
def rle_encode(mask) -> dict | list[dict]:
    """Compressed COCO RLE of a mask [H, W] (returns a dict) or of a batch [N, H, W] (returns a list of
    dicts).

    Any nonzero pixel is foreground. ``counts`` is an ASCII ``str``; pycocotools returns the same characters
    as ``bytes``. A torch tensor on an accelerator has its run boundaries found there; a CPU tensor shares
    memory with numpy and takes the numpy path.
    """
    if not (torch.is_tensor(mask) or isinstance(mask, np.ndarray | list | tuple)):
        raise TypeError(f"mask must be an array or tensor [H, W] or [N, H, W], got {type(mask).__name__}")
    single = _ndim(mask) == 2
    if _ndim(mask) not in (2, 3):
        raise ValueError(f"mask must be [H, W] or [N, H, W], got shape {tuple(mask.shape)}")
    if torch.is_tensor(mask) and mask.device.type != "cpu":
        masks = mask[None] if single else mask
        N, H, W = masks.shape
        flat = _changes_torch(masks)
    else:
        masks = mask.numpy(force=True) if torch.is_tensor(mask) else np.asarray(mask)
        masks = masks[None] if single else masks
        N, H, W = masks.shape
        flat = _changes_numpy(masks)
    counts, offsets = _changes_to_counts(flat, N, H * W)
    strings = _counts_to_strings(counts, offsets)
    out = [{"size": [H, W], "counts": s} for s in strings]
    return out[0] if single else out


def _ndim(x) -> int:
    return x.dim() if torch.is_tensor(x) else np.ndim(x)


def _index_dtype(n: int) -> type:
    """int32 when every flat pixel index fits (half the memory traffic of int64), else int64."""
    return np.int32 if n < 2**31 - 16 else np.int64


def _changes_numpy(masks: np.ndarray) -> np.ndarray:
    """Sorted flat positions ``n * H * W + (column-major position)`` where mask n's column-major pixel stream
    changes value (a virtual 0 precedes pixel 0)."""
    N, H, W = masks.shape
    size = N * H * W
    dt = _index_dtype(size)
    if size == 0:
        return np.zeros(0, dt)
    # Masks go through in chunks of about 2 MiB so that one scratch buffer is reused while it is in cache (a
    # fresh buffer per batch costs more in page faults than the scan itself).
    per = max(1, _CHUNK_BYTES // (H * W))
    buf = np.empty(-(-min(N, per) * H * W // 8) * 8, dtype=np.uint8)
    out = [_chunk_changes(masks[a : a + per], buf, dt) + dt(a * H * W) for a in range(0, N, per)]
    return out[0] if len(out) == 1 else np.concatenate(out)


_CHUNK_BYTES = 1 << 21


def _chunk_changes(masks: np.ndarray, buf: np.ndarray, dt: type) -> np.ndarray:
    N, H, W = masks.shape
    size = N * H * W
    u = masks.view(np.uint8) if masks.dtype == np.bool_ else (masks != 0).view(np.uint8)
    # Changes are found on the C-order array (no transpose copy): down a column, and from the bottom of column
    # x-1 to the top of column x. Bytes are 0/1, so XOR marks a change with 1. The buffer is padded to whole
    # 8-byte words so that changes can be located a word at a time.
    padded = -(-size // 8) * 8
    buf[size:padded] = 0
    d = buf[:size].reshape(N, H, W)
    np.bitwise_xor(u[:, 1:], u[:, :-1], out=d[:, 1:])
    np.bitwise_xor(u[:, 0, 1:], u[:, -1, :-1], out=d[:, 0, 1:])
    d[:, 0, 0] = u[:, 0, 0]
    words = buf[:padded].view(np.uint64)
    hit = np.flatnonzero(words != 0)  # (bool scans are numpy's fast nonzero path)
    if len(hit) * 4 > len(words):
        # Dense changes (noise-like masks): a transposed copy then a linear scan beats sorting many positions.
        f = np.ascontiguousarray(u.transpose(0, 2, 1)).reshape(N, H * W)
        d2 = d.reshape(N, H * W)
        d2[:, 0] = f[:, 0]
        np.bitwise_xor(f[:, 1:], f[:, :-1], out=d2[:, 1:])
        return np.flatnonzero(d2.view(np.bool_)).astype(dt, copy=False)
    j = np.flatnonzero(words[hit].view(np.bool_)).astype(dt, copy=False)  # byte j of the hit words
    flat = hit.astype(dt)[j >> 3] * 8 + (j & 7)  # sorted by (n, y, x); we need (n, x, y)
    HW, n_H, n_W = dt(H * W), dt(H), dt(W)
    n = flat // HW
    y = flat - n * HW
    y //= n_W
    key = flat - n * HW - y * n_W  # x
    key *= n_H
    key += y
    key += n * HW
    key.sort()
    return key


def _changes_torch(masks: torch.Tensor) -> np.ndarray:
    """``_changes_numpy`` on the tensor's device: a transposed copy is cheap there, so scan column-major."""
    N, H, W = masks.shape
    if N * H * W == 0:
        return np.zeros(0, np.int64)
    f = (masks != 0).transpose(1, 2).reshape(N * H * W)  # (N*H*W,) column-major per mask
    d = torch.empty_like(f)
    d[1:] = f[1:] != f[:-1]
    d[:: H * W] = f[:: H * W]  # each mask starts after a virtual 0
    return d.nonzero()[:, 0].cpu().numpy()


def _changes_to_counts(flat: np.ndarray, N: int, area: int) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths from sorted flat change positions: mask r's counts are the gaps between r*area, its
    changes and (r+1)*area. Returns (counts, offsets)."""
    dt = _index_dtype(N * area)
    flat = flat.astype(dt, copy=False)
    ends_of_masks = np.arange(1, N + 1, dtype=dt) * dt(area)
    at = np.searchsorted(flat, ends_of_masks)  # a change at a mask's first pixel follows the previous end
    bounds = np.append(flat, ends_of_masks) if N == 1 else np.insert(flat, at, ends_of_masks)
    counts = np.diff(bounds, prepend=dt(0))
    offsets = np.zeros(N + 1, dtype=np.int64)
    offsets[1:] = at + np.arange(1, N + 1)
    return counts, offsets


def _local_index(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each element within its segment, segment id of each element)."""
    if len(offsets) == 2:
        return np.arange(int(offsets[-1])), np.zeros(int(offsets[-1]), dtype=np.int64)
    sizes = np.diff(offsets)
    seg = np.repeat(np.arange(len(sizes)), sizes)
    return np.arange(int(offsets[-1])) - offsets[:-1][seg], seg


def _counts_to_strings(counts: np.ndarray, offsets: np.ndarray) -> list[str]:
    """LEB128-like text of each segment of ``counts`` (5 bits per char, chars 48..111, delta from i-2 for
    i>2), built as one byte buffer and decoded once."""
    n = len(counts)
    if n == 0:
        return [""] * (len(offsets) - 1)
    x = counts.astype(counts.dtype if counts.dtype in (np.int32, np.int64) else np.int64, copy=True)
    x[2:] -= counts[:-2]
    sizes = np.diff(offsets)
    for i in (0, 1, 2):  # the first three values of each segment are written as they are
        at = offsets[:-1][sizes > i] + i
        x[at] = counts[at]
    # Groups needed: the smallest k with -2^(5k-1) <= x < 2^(5k-1), i.e. the bit length of x (or ~x for x < 0)
    # plus a sign bit, in 5-bit groups.
    v = x >> (8 * x.itemsize - 1)
    v ^= x
    v >>= 4
    k = np.ones(n, dtype=np.int8)
    while True:
        more = v != 0
        if not more.any():
            break
        k += more
        v >>= 5
    K = int(k.max())
    # (values, groups) chars with 0 where a value has fewer groups; the zeros are then deleted in C by
    # bytes.translate (a boolean-mask compaction in numpy is several times slower).
    grid = np.empty((n, K), dtype=np.uint8)
    for g in range(K):
        c = ((x >> (5 * g)) & 0x1F).astype(np.uint8)
        c += 48
        c += (k > g + 1).view(np.uint8) << 5  # 0x20: another group follows
        if g:
            c *= (k > g).view(np.uint8)
        grid[:, g] = c
    raw = grid.tobytes()
    text = (raw if K == 1 else raw.translate(None, b"\x00")).decode("ascii")
    if len(offsets) == 2:
        return [text]
    cut = [0] + np.cumsum(np.add.reduceat(k, offsets[:-1], dtype=np.int64)).tolist()
    return [text[a:b] for a, b in zip(cut[:-1], cut[1:], strict=True)]


# --------------------------------------------------------------------------------------------- decoding
def _size(rle) -> tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"an RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}")
    size = rle["size"]
    if len(size) != 2 or any(int(s) != s or s < 0 for s in size):
        raise ValueError(f"RLE size must be [H, W] with non-negative ints, got {size}")
    return int(size[0]), int(size[1])


def _sizes(rles: list) -> np.ndarray:
    """(H, W) of every RLE, int64 [N, 2], checked at once; :func:`_size` names the first bad one."""
    try:
        if not all(type(r) is dict and "counts" in r for r in rles):
            raise ValueError
        raw = np.array([r["size"] for r in rles])
        sizes = raw.astype(np.int64)
        if raw.shape != (len(rles), 2) or raw.dtype.kind not in "iuf" or (sizes != raw).any() or (sizes < 0).any():
            raise ValueError
    except (ValueError, TypeError, KeyError, OverflowError):
        for r in rles:
            _size(r)
        raise
    return sizes.reshape(len(rles), 2)


def _parse(rles: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Counts of every RLE, concatenated, with segment offsets and sizes; validated against H*W."""
    sizes_arr = _sizes(rles)
    sizes = [(int(h), int(w)) for h, w in sizes_arr.tolist()]
    raw = [r["counts"] for r in rles]
    if all(type(c) is str for c in raw):  # the common case, all compressed text: decoded in one pass
        try:
            counts, offsets = _strings_to_counts([c.encode("ascii") for c in raw], split=False)
        except UnicodeEncodeError:
            i = next(i for i, c in enumerate(raw) if not c.isascii())
            p = next(k for k, ch in enumerate(raw[i]) if not ch.isascii())
            raise ValueError(f"RLE {i} counts string has an invalid character {raw[i][p]!r} at position {p}") from None
    else:
        texts, lists, which = [], [], []
        for i, c in enumerate(raw):
            if isinstance(c, str | bytes | bytearray):
                if isinstance(c, str) and not c.isascii():
                    p = next(k for k, ch in enumerate(c) if not ch.isascii())
                    raise ValueError(f"RLE {i} counts string has an invalid character {c[p]!r} at position {p}")
                texts.append(c.encode("ascii") if isinstance(c, str) else bytes(c))
                which.append("s")
            else:
                lists.append(np.asarray(c, dtype=np.int64).reshape(-1))
                which.append("l")
        parsed_text = iter(_strings_to_counts(texts)) if texts else iter(())
        parsed_list = iter(lists)
        segs = [next(parsed_text) if kind == "s" else next(parsed_list) for kind in which]
        lengths = np.array([len(s) for s in segs], dtype=np.int64)
        offsets = np.zeros(len(segs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        counts = np.concatenate(segs) if segs else np.zeros(0, np.int64)
    if (counts < 0).any():
        i = int(np.searchsorted(offsets, np.flatnonzero(counts < 0)[0], side="right") - 1)
        raise ValueError(f"RLE {i} has a negative count: {counts[offsets[i] : offsets[i + 1]].tolist()[:8]}...")
    hw = sizes_arr[:, 0] * sizes_arr[:, 1]
    too_big = int(hw.max()) if len(hw) else 0
    if counts.size and counts.max() > too_big:  # also keeps the sums below from wrapping around
        at = int(np.argmax(counts > too_big))
        i = int(np.searchsorted(offsets, at, side="right") - 1)
        H, W = sizes[i]
        raise ValueError(f"RLE {i} has a count {int(counts[at])}, more than its size {H}x{W} holds")
    cs = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=cs[1:])
    totals = cs[offsets[1:]] - cs[offsets[:-1]]
    wrong = np.flatnonzero(totals != hw)
    if len(wrong):
        i = int(wrong[0])
        H, W = sizes[i]
        raise ValueError(f"RLE {i} counts sum to {int(totals[i])}, but its size {H}x{W} needs {H * W}")
    return counts, offsets, sizes


def _strings_to_counts(texts: list[bytes], split: bool = True):
    """Decode every compressed string at once; raise ValueError naming the string and character position.
    Returns one counts array per string, or with ``split=False`` (all counts, offsets [len(texts) + 1])."""
    lens = np.array([len(t) for t in texts], dtype=np.int64)
    c = np.frombuffer(b"".join(texts), dtype=np.uint8)
    str_end = np.cumsum(lens)
    bad = np.flatnonzero((c < 48) | (c > 111))
    if len(bad):
        i = int(np.searchsorted(str_end, bad[0], side="right"))
        p = int(bad[0] - (str_end[i] - lens[i]))
        raise ValueError(
            f"RLE counts string {i} has an invalid character {chr(c[bad[0]])!r} at position {p} (allowed: '0'..'o')"
        )
    c = c - np.uint8(48)  # 0..63
    last = c < 0x20  # no continuation bit: this char ends a value
    nonempty = np.flatnonzero(lens)
    open_end = nonempty[~last[str_end[nonempty] - 1]]
    if len(open_end):
        i = int(open_end[0])
        raise ValueError(f"RLE counts string {i} ends inside a value at position {int(lens[i]) - 1}")
    if last.all():  # one char per value (noise-like masks): sign-extend 5 bits through int8
        x = (c << np.uint8(3)).view(np.int8) >> np.int8(3)  # (n,) values -16..15
        return _undo_deltas(x.astype(np.int64), lens, split)
    ends = np.flatnonzero(last)
    glen = np.empty(len(ends), dtype=np.int32)  # chars per value (int32: less fresh memory than diff's int64)
    glen[:1] = ends[:1] + 1
    np.subtract(ends[1:], ends[:-1], out=glen[1:], casting="unsafe")
    K = int(glen.max()) if len(glen) else 1
    if K > _MAX_GROUPS:
        g = int(np.argmax(glen > _MAX_GROUPS))
        start = int(ends[g] - glen[g] + 1)
        i = int(np.searchsorted(str_end, start, side="right"))
        p = int(start - (str_end[i] - lens[i]))
        raise ValueError(f"RLE counts string {i} has a value longer than {_MAX_GROUPS} chars at position {p}")
    # Every value's last group, sign-extended from bit 4; values of more chars then shift it up and add the
    # lower groups (a minority of values: only those are gathered again).
    x = ((c[ends] << np.uint8(3)).view(np.int8) >> np.int8(3)).astype(np.int64)
    if K > 1:
        m = np.flatnonzero(glen > 1)
        lm = glen[m]
        xm = x[m] << (5 * (lm - 1))
        first = ends[m] - (lm - 1)
        for g in range(K - 1):  # group g of the values that have more than g + 1 groups
            has = np.flatnonzero(lm > g + 1)
            xm[has] |= (c[first[has] + g] & np.uint8(0x1F)).astype(np.int64) << (5 * g)
        x[m] = xm
    per_string = (
        [len(x)] if len(texts) == 1 else np.bincount(np.searchsorted(str_end, ends, side="right"), minlength=len(texts))
    )
    return _undo_deltas(x, per_string, split)


def _undo_deltas(x: np.ndarray, per_string, split: bool = True):
    """Counts from written values (``per_string`` values per string): counts[i] = x[i] + counts[i - 2] for
    i > 2, i.e. a running sum along each chain x2, x4, ... and x1, x3, ... of every string, restarting at
    i <= 2."""
    offsets = np.zeros(len(per_string) + 1, dtype=np.int64)
    np.cumsum(per_string, out=offsets[1:])
    sizes = np.diff(offsets)
    resets = np.sort(np.concatenate([offsets[:-1][sizes > i] + i for i in (0, 1, 2)]))
    counts = np.empty_like(x)
    for p in (0, 1):  # global index parity: i and i - 2 always share it
        xp, r = x[p::2].copy(), resets[resets % 2 == p] // 2  # r[0] == 0: index 0 and 1 are resets
        if len(xp):
            # cumsum that restarts at each reset: subtract the previous segment's total there
            xp[r[1:]] -= np.add.reduceat(xp, r)[:-1]
            np.cumsum(xp, out=counts[p::2])
    if not split:
        return counts, offsets
    if len(per_string) == 1:
        return [counts]
    return [counts[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def rle_decode(rle, device=None):
    """Pixels of one RLE (bool [H, W]) or of a list of same-size RLEs (bool [N, H, W]).

    ``counts`` may be the compressed ``str``/``bytes`` or a list of ints (uncompressed COCO RLE). With
    ``device`` (a str or ``torch.device``) the result is a torch bool tensor built on that device (on CPU, a
    view of the numpy result); otherwise a numpy array (Fortran-ordered per mask, like pycocotools).
    """
    single = isinstance(rle, dict)
    rles = [rle] if single else list(rle)
    counts, offsets, sizes = _parse(rles)
    if len(set(sizes)) > 1:
        raise ValueError(f"batched decode needs one mask size, got {sorted(set(sizes))}")
    H, W = sizes[0] if sizes else (0, 0)
    N = len(rles)
    if N == 1:
        vals = np.zeros(len(counts), dtype=bool)
        vals[1::2] = True  # runs alternate 0, 1, 0, ...
    else:
        vals = (_local_index(offsets)[0] & 1).astype(bool)
    if device is not None and torch.device(device).type != "cpu":
        vals = torch.from_numpy(vals).to(device)
        flat = torch.repeat_interleave(vals, torch.from_numpy(counts).to(device), output_size=N * H * W)
        out = flat.reshape(N, W, H).transpose(1, 2)
    else:
        flat = np.repeat(vals, counts)
        out = flat.reshape(N, W, H).transpose(0, 2, 1)
        if device is not None:  # CPU tensor: shares the numpy buffer (numpy's repeat beats repeat_interleave)
            out = torch.from_numpy(out)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------- measures
def area(rle) -> int | np.ndarray:
    """Foreground pixel count of one RLE (int) or of a list (int64 [N]): the sum of the odd-indexed counts."""
    single = isinstance(rle, dict)
    a = Runs.of([rle] if single else list(rle)).area()
    return int(a[0]) if single else a


def bbox(rle) -> np.ndarray:
    """Box [x, y, w, h] (float64) of one RLE, or [N, 4] for a list; all zeros for an empty mask.

    Follows COCO's ``rleToBbox``: a foreground run that spans two columns makes the box full height.
    """
    single = isinstance(rle, dict)
    out = Runs.of([rle] if single else list(rle)).bbox()
    return out[0] if single else out


@dataclass(frozen=True)
class Runs:
    """The run lengths of N masks, parsed and checked once, for measures over many masks and pairs of masks.

    ``counts`` holds every mask's runs one after another (each starting with a run of zeros), ``offsets`` where
    each mask's runs begin, ``sizes`` each mask's (H, W). :meth:`of` reads RLE dicts; :meth:`to_rles` writes
    them back as compressed RLE. Nothing is decoded to pixels.
    """

    counts: np.ndarray  # int64 [sum of runs]
    offsets: np.ndarray  # int64 [N + 1]
    sizes: np.ndarray  # int64 [N, 2]: (H, W) of each mask

    @classmethod
    def of(cls, rles: Sequence[dict]) -> Runs:
        """Runs of RLE dicts (compressed str/bytes or uncompressed list counts), each checked against its size."""
        counts, offsets, sizes = _parse(list(rles))
        return cls(counts.astype(np.int64, copy=False), offsets, np.asarray(sizes, dtype=np.int64).reshape(-1, 2))

    @classmethod
    def concat(cls, parts: Sequence[Runs]) -> Runs:
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros((0, 2), np.int64))
        shift = np.cumsum([0] + [len(p.counts) for p in parts[:-1]])
        offsets = np.concatenate(
            [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, shift, strict=True)]
        )
        return cls(np.concatenate([p.counts for p in parts]), offsets, np.concatenate([p.sizes for p in parts]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """(index of each run within its mask, mask of each run)."""
        return _local_index(self.offsets)

    @functools.cached_property
    def _at(self) -> np.ndarray:
        """Where each run starts within its mask (column-major pixel index)."""
        before = np.cumsum(self.counts) - self.counts
        hw = self.sizes[:, 0] * self.sizes[:, 1]
        return before - (np.cumsum(hw) - hw)[self._index[1]]  # a mask's runs sum to its H*W

    def to_rles(self) -> list[dict]:
        """Compressed RLE dicts (``counts`` as str), one per mask."""
        strings = _counts_to_strings(self.counts, self.offsets)
        return [{"size": [int(h), int(w)], "counts": s} for (h, w), s in zip(self.sizes, strings, strict=True)]

    def take(self, idx) -> Runs:
        """The masks at ``idx`` (an int array), in that order."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        m = np.diff(self.offsets)[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(m, out=offsets[1:])
        src = np.repeat(self.offsets[idx] - offsets[:-1], m) + np.arange(int(offsets[-1]))
        return Runs(self.counts[src], offsets, self.sizes[idx])

    def area(self) -> np.ndarray:
        """Foreground pixels per mask, int64 [N]."""
        j, seg = self._index
        odd = (j & 1).astype(bool)
        return np.bincount(seg[odd], weights=self.counts[odd], minlength=len(self)).astype(np.int64)

    def columns(self) -> np.ndarray:
        """First and last column holding foreground, int64 [N, 2] (-1, -1 for an empty mask). Found from the first
        and last foreground runs only, so it costs O(N), not O(runs)."""
        m = np.diff(self.offsets)
        out = np.full((len(self), 2), -1, dtype=np.int64)
        some = (m >= 2) & (self.sizes[:, 0] > 0)
        first_fg = self.offsets[:-1][some] + 1
        last_fg = self.offsets[:-1][some] + (m[some] - 2) // 2 * 2 + 1  # the last odd local index
        h = self.sizes[some, 0]
        out[some, 0] = self._at[first_fg] // h
        out[some, 1] = np.maximum(self._at[last_fg] + self.counts[last_fg] - 1, self._at[first_fg]) // h
        return out

    def bbox(self) -> np.ndarray:
        """Boxes [N, 4] (x, y, w, h; float64) by ``rleToBbox`` of pycocotools 2.x: over the non-empty foreground
        runs, first to last column; a run that crosses a column boundary makes the box full height. A mask
        without foreground gets zeros (pycocotools: zeros, or wrapped-around unsigned values when its counts
        hold only empty foreground runs)."""
        hs = self.sizes[:, 0]
        j, seg = self._index
        fg = np.flatnonzero((j & 1).astype(bool) & (self.counts > 0))
        out = np.zeros((len(self), 4), dtype=np.float64)
        if not len(fg):
            return out
        s = seg[fg]
        x0, y0 = np.divmod(self._at[fg], hs[s])  # first pixel of each foreground run
        x1, y1 = np.divmod(self._at[fg] + self.counts[fg] - 1, hs[s])  # its last pixel
        first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        present = s[first]
        xs, xe = np.minimum.reduceat(x0, first), np.maximum.reduceat(x1, first)
        ys, ye = np.minimum.reduceat(y0, first), np.maximum.reduceat(y1, first)
        full = np.zeros(len(self), bool)
        full[s[x0 < x1]] = True  # a run across columns
        full = full[present]
        ys[full], ye[full] = 0, hs[present][full] - 1
        out[present] = np.stack([xs, ys, xe - xs + 1, ye - ys + 1], axis=1)
        return out

    def _line(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All masks laid on one line, mask n on [base_n, base_n + H_n W_n] with base_n = sum over q < n of
        (H_q W_q + 1). Returns (P, F, fg) per run: where it starts on the line (sorted), the foreground before
        it on the line, and whether it is a foreground run."""
        j, seg = self._index
        before = np.cumsum(self.counts) - self.counts  # a mask's runs sum to its H*W, so masks follow each other
        fg = (j & 1).astype(bool)
        fg_counts = np.where(fg, self.counts, 0)
        return before + seg, np.cumsum(fg_counts) - fg_counts, fg

    def intersections(self, i, j) -> np.ndarray:
        """|M_i & M_j| for each pair (i[p], j[p]), int64 [P], from the runs alone (no decoding).

        For each foreground run [s, e) of the mask with fewer runs, the other mask's foreground inside it is
        F(e) - F(s), where F(x) counts that mask's foreground before x: one binary search over the run starts
        of all masks (laid on one line by ``_line``) finds the run that holds x. Pairs must share one size.
        """
        i, j = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (i, j))
        if len(i) != len(j):
            raise ValueError(f"i and j must pair up, got {len(i)} and {len(j)} indices")
        differ = (self.sizes[i] != self.sizes[j]).any(1)
        if differ.any():
            p = int(np.flatnonzero(differ)[0])
            raise ValueError(f"pair {p} has masks of sizes {self.sizes[i[p]].tolist()} and {self.sizes[j[p]].tolist()}")
        m = np.diff(self.offsets)
        fewer = m[i] <= m[j]
        a, b = np.where(fewer, i, j), np.where(fewer, j, i)  # walk a's foreground runs, look them up in b
        P, F, fg = self._line()
        n_fg = m[a] // 2
        pair = np.repeat(np.arange(len(a)), n_fg)  # (Q,) one query per foreground run of a
        k = np.arange(len(pair)) - np.repeat(np.cumsum(n_fg) - n_fg, n_fg)
        run = self.offsets[a][pair] + 1 + 2 * k
        s = P[run] + (P[self.offsets[b]] - P[self.offsets[a]])[pair]  # the run's start on b's part of the line
        e = s + self.counts[run]
        inside = _foreground_before(e, P, F, fg) - _foreground_before(s, P, F, fg)
        return np.bincount(pair, weights=inside, minlength=len(a)).astype(np.int64)

    def union(self, group, n_groups: int | None = None) -> Runs:
        """One mask per group: the union of the masks with ``group[n] == g`` (masks of a group share one size;
        a group with no mask is not allowed). COCO's ``merge`` on each group, computed on runs."""
        group = np.asarray(group, dtype=np.int64).reshape(-1)
        G = int(group.max()) + 1 if n_groups is None else int(n_groups)
        order = np.argsort(group, kind="stable")
        first = np.searchsorted(group[order], np.arange(G))
        last = np.searchsorted(group[order], np.arange(G), side="right")
        if (first == last).any():
            raise ValueError(f"group {int(np.flatnonzero(first == last)[0])} has no mask to merge")
        sizes = self.sizes[order[first]]
        if (self.sizes[order] != np.repeat(sizes, last - first, axis=0)).any():
            raise ValueError("masks merged into one must share one size")
        hw = sizes[:, 0] * sizes[:, 1]
        base = np.zeros(G, dtype=np.int64)
        np.cumsum(hw[:-1] + 1, out=base[1:])
        # Foreground runs as +1 / -1 events on each group's line; covered where the running sum is positive.
        j, seg = self._index
        fg = (j & 1).astype(bool) & (self.counts > 0)
        at = self._at[fg] + base[group[seg[fg]]]
        pos = np.concatenate([at, at + self.counts[fg]])
        step = np.concatenate([np.ones(len(at), np.int64), -np.ones(len(at), np.int64)])
        u, inv = np.unique(pos, return_inverse=True)
        cover = np.cumsum(np.bincount(inv, weights=step, minlength=len(u))) > 0
        edge = np.flatnonzero(cover != np.r_[False, cover[:-1]])  # covered starts and ends alternate
        e = u[edge]
        g = np.searchsorted(base, e, side="right") - 1
        # Counts per group: differences of [start, edges..., end] of its part of the line. An edge at the very
        # start gives the leading zero run COCO writes; one at the very end would give a trailing zero: dropped.
        bounds = np.concatenate([base, e, base + hw])
        gid = np.concatenate([np.arange(G), g, np.arange(G)])
        rank = np.concatenate([np.zeros(G, np.int64), np.ones(len(e), np.int64), np.full(G, 2, np.int64)])
        o = np.lexsort((bounds, rank, gid))
        bounds, gid = bounds[o], gid[o]
        d = np.diff(bounds)
        first_of_group = np.r_[True, gid[1:-1] != gid[:-2]]
        keep = (gid[1:] == gid[:-1]) & ((d > 0) | first_of_group)
        counts = d[keep]
        per = np.bincount(gid[1:][keep], minlength=G)
        offsets = np.zeros(G + 1, dtype=np.int64)
        np.cumsum(per, out=offsets[1:])
        return Runs(counts, offsets, sizes)


def _foreground_before(x: np.ndarray, P: np.ndarray, F: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Foreground on the line before each position x (see ``Runs._line``)."""
    r = np.searchsorted(P, x, side="right") - 1  # the last run starting at or before x: the one holding x
    return F[r] + np.where(fg[r], x - P[r], 0)


def iou(dt: Sequence[dict], gt: Sequence[dict], iscrowd: Sequence[bool] | None = None) -> np.ndarray:
    """Mask IoU matrix [len(dt), len(gt)] (float64), COCO semantics.

    For a crowd ground truth (``iscrowd[g]`` true) the denominator is the detection's area, not the union, so
    a detection inside a crowd region scores 1. Pairs with no intersection score 0 (also two empty masks).
    All masks must share one size.
    """
    dt, gt = list(dt), list(gt)
    crowd = np.zeros(len(gt), bool) if iscrowd is None else np.asarray(iscrowd, dtype=bool).reshape(-1)
    if len(crowd) != len(gt):
        raise ValueError(f"iscrowd has {len(crowd)} entries but there are {len(gt)} ground truths")
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)), dtype=np.float64)
    sizes = {_size(r) for r in dt + gt}
    if len(sizes) > 1:
        raise ValueError(f"iou needs masks of one size, got {sorted(sizes)}")
    D = rle_decode(dt).reshape(len(dt), -1)
    G = rle_decode(gt).reshape(len(gt), -1)
    inter = _intersections(D, G)
    a_d = area(dt).astype(np.float64)[:, None]
    a_g = area(gt).astype(np.float64)[None, :]
    union = np.where(crowd[None, :], a_d, a_d + a_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(inter > 0, inter / union, 0.0)
    return out


def _intersections(D: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Exact |D_i & G_j| as float64: float32 matmuls over chunks short enough (< 2^24 pixels) to stay
    exact."""
    HW = D.shape[1]
    chunk = 1 << 23
    total = np.zeros((D.shape[0], G.shape[0]), dtype=np.int64)
    for a in range(0, HW, chunk):
        d = torch.from_numpy(np.ascontiguousarray(D[:, a : a + chunk])).float()
        g = torch.from_numpy(np.ascontiguousarray(G[:, a : a + chunk])).float()
        total += (d @ g.T).round().long().numpy()
    return total.astype(np.float64)


def merge(rles: Sequence[dict], intersect: bool = False) -> dict:
    """Union (default) or intersection of same-size RLEs, as one RLE (COCO ``merge``)."""
    rles = list(rles)
    if not rles:
        raise ValueError("merge needs at least one RLE, got an empty list")
    return merge_groups([rles], intersect=intersect)[0]


def merge_groups(groups: Sequence[Sequence[dict]], intersect: bool = False) -> list[dict]:
    """Batched ``merge``: one union (or intersection) per group, all decoded and re-encoded in one pass."""
    groups = [list(g) for g in groups]
    if any(not g for g in groups):
        raise ValueError("merge_groups needs at least one RLE in every group, got an empty group")
    flat = [r for g in groups for r in g]
    if not flat:
        return []
    masks = rle_decode(flat)  # [sum(len(g)), H, W]; one size for all
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    op = np.logical_and if intersect else np.logical_or
    return rle_encode(op.reduceat(masks, starts, axis=0))
