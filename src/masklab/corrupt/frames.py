"""Frame masks for speech and other signals: spans of time steps hidden from the encoder.

:func:`span_mask` follows wav2vec 2.0's span masking (Baevski et al. 2020, Sec. 3.1: sample a proportion ``p``
of time steps as starting indices, mask the next ``M`` steps; spans may overlap), as implemented by fairseq's
``compute_mask_indices`` and ported to Hugging Face as ``_compute_mask_indices``:

- the number of spans in a row of ``sz`` valid frames is ``int(mask_prob * sz / mask_length + eps)``, ``eps ~
  U(0,1)`` (probabilistic rounding), at least ``min_masks``, capped so the spans fit;
- span starts are distinct, uniform over ``[0, sz - mask_length]``; spans may overlap (default);
- span lengths are ``static`` (= mask_length) or, as in fairseq, ``uniform`` on [mask_other, 2*mask_length],
  ``normal`` (mean mask_length, std mask_other, at least 1) or ``poisson`` (mean mask_length).

Beyond the anchors: ``no_overlap=True`` places the spans without overlap and with at least ``min_space``
unmasked frames between them, uniformly over all such placements ("stars and bars", one pass, no rejection
loop);
``same_count=True`` gives every row the smallest row's masked count by dropping whole spans and shortening
one, never splitting a span into pieces (fairseq's ``require_same_masks`` instead unmasks random frames, which
fragments spans). Everything is batched: no per-row Python loop, any device.

:func:`ask2mask` picks the span starts from per-frame scorer confidence (Ask2Mask, Baskar et al. 2022, Sec. 2:
mask the frames the scorer is confident about) and returns utterance-level loss weights (their Sec. 2.2: the MSM
loss of an utterance is scaled by its confidence, the mean frame confidence; divided here by a fixed
``weight_reference``, never by a batch statistic, so an utterance's weight does not depend on its batch).

Randomness: ``keys`` [B] from :func:`masklab.corrupt.keyed.example_keys`, or ``seed`` (int with ``epoch``;
rows are example indices 0..B-1; None = 0), or ``seed`` as a ``torch.Generator``. Keyed draws are
:func:`masklab.corrupt.keyed.bits` (span-start order) and :func:`masklab.corrupt.keyed.uniform`, shared with the
patch masks through :class:`masklab.corrupt._select.Source`. The CPU path (compiled kernel, numpy or torch) follows
:mod:`masklab.corrupt._backend`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from masklab.corrupt import _backend, jit, keyed
from masklab.corrupt._select import Source, check_ratio, smallest_indices, smallest_k
from masklab.corrupt.keyed import Stream

__all__ = ["span_mask", "span_lengths", "ask2mask", "FrameMask", "MASK_TYPES"]

MASK_TYPES = ("static", "uniform", "normal", "poisson")


@dataclass
class FrameMask:
    """mask [B, T] bool (True = masked); weights [B] float utterance loss weight."""

    mask: torch.Tensor
    weights: torch.Tensor


def span_lengths(
    u: torch.Tensor, u2: torch.Tensor, mask_type: str, mask_length: int, mask_other: float
) -> torch.Tensor:
    """Span lengths (long, same shape as ``u``) from uniforms ``u``, ``u2`` in [0, 1), as fairseq draws
    them."""
    if mask_type == "static":
        return torch.full_like(u, mask_length, dtype=torch.long)
    if mask_type == "uniform":  # rng.randint(mask_other, 2 * mask_length + 1)
        lo = int(mask_other)
        return lo + (u * (2 * mask_length + 1 - lo)).long().clamp(max=2 * mask_length - lo)
    if mask_type == "normal":  # max(1, round(N(mask_length, mask_other)))
        z = torch.sqrt(-2 * torch.log1p(-u)) * torch.cos(2 * math.pi * u2)  # Box-Muller
        return (mask_length + mask_other * z).round().long().clamp(min=1)
    if mask_type == "poisson":  # inverse CDF of Poisson(mask_length)
        kmax = int(mask_length + 12 * math.sqrt(mask_length) + 12)
        k = torch.arange(kmax + 1, dtype=torch.float64)
        logp = k * math.log(mask_length) - mask_length - torch.lgamma(k + 1)
        cdf = logp.exp().cumsum(0).to(u.device)
        return torch.searchsorted(cdf, u.double().contiguous(), right=True).clamp(max=kmax)
    raise ValueError(f"unknown mask_type {mask_type!r}; expected one of {', '.join(MASK_TYPES)}")


def _paint(starts: torch.Tensor, lens: torch.Tensor, sz: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T] bool union of spans [start, start + len) cut at sz; len 0 spans paint nothing."""
    B = starts.shape[0]
    ends = torch.minimum(starts + lens, sz[:, None])
    starts = torch.minimum(starts, ends)
    diff = torch.zeros(B, T + 1, dtype=torch.int32, device=starts.device)
    diff.scatter_add_(1, starts, torch.ones_like(starts, dtype=torch.int32))
    diff.scatter_add_(1, ends, torch.full_like(ends, -1, dtype=torch.int32))
    return diff[:, :T].cumsum(1) > 0


def _equalize(mask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Give every row the smallest row's masked count: keep whole runs (contiguous masked stretches) in random
    order while they fit, cut the run that crosses the target to a prefix, drop the rest. No run is split."""
    B, T = mask.shape
    target = mask.sum(1).min()
    start = mask & ~torch.nn.functional.pad(mask, (1, 0))[:, :T]
    run = start.cumsum(1) - 1  # run id of each masked frame (garbage where unmasked)
    run = torch.where(mask, run, torch.full_like(run, T))  # unmasked -> overflow slot T
    run_len = torch.zeros(B, T + 1, dtype=torch.long, device=mask.device).scatter_add_(1, run, mask.long())[:, :T]
    n_runs = start.sum(1, keepdim=True)
    prio = torch.where(torch.arange(T, device=mask.device) < n_runs, u, torch.full_like(u, 2.0))
    order = prio.argsort(dim=1, stable=True)  # runs in random order, non-runs last; ties by index on every device
    before = run_len.gather(1, order).cumsum(1) - run_len.gather(1, order)  # masked frames before each run
    allow = torch.zeros_like(before).scatter_(1, order, (target - before).clamp(min=0))  # per run id
    offset = torch.arange(T, device=mask.device) - (start.long() * torch.arange(T, device=mask.device)).cummax(1).values
    return mask & (offset < allow.gather(1, run.clamp(max=T - 1)))


# ------------------------------------------------------------------------------------------------ span_mask


@dataclass(frozen=True)
class _Law:
    """The checked settings of one :func:`span_mask` call (``p`` and ``M`` as given: the arithmetic below uses
    them unconverted, as fairseq does).

    ``n_max`` bounds the spans per row without a device sync; ``hf_cap`` says whether Hugging Face's cap
    (``T // M`` spans when ``n M > T``) can bind.
    """

    T: int
    p: float
    M: int
    mask_type: str
    mask_other: float
    min_masks: int
    no_overlap: bool
    min_space: int

    @property
    def n_max(self) -> int:
        return min(max(int(self.p * self.T / self.M + 1), self.min_masks), max(self.T // self.M, 1))

    @property
    def hf_cap(self) -> bool:
        return max(int(self.p * self.T / self.M + 1), self.min_masks) * self.M > self.T

    def wav2vec2_default(self, start_logits) -> bool:
        """Distinct uniform starts, spans of exactly M, overlap allowed: the path with CPU kernels."""
        return not self.no_overlap and self.mask_type == "static" and start_logits is None


def _check_law(shape, mask_prob, mask_length, mask_type, mask_other, min_masks, no_overlap, min_space):
    """(B, T) and the :class:`_Law` of a call; each bad argument is one error naming it."""
    if len(shape) != 2:
        raise ValueError(f"shape must be (B, T), got {shape!r}")
    B, T = (int(s) for s in shape)
    check_ratio("mask_prob", mask_prob)
    if isinstance(mask_length, bool) or not isinstance(mask_length, numbers.Integral):
        raise TypeError(f"mask_length must be an int, got {type(mask_length).__name__} {mask_length!r}")
    if int(mask_length) < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if mask_length > T:
        raise ValueError(f"mask_length {mask_length} is longer than the sequence ({T} frames)")
    if min_space < 0 or min_masks < 0:
        raise ValueError(f"min_space and min_masks must be >= 0, got {min_space}, {min_masks}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask_type {mask_type!r}; expected one of {', '.join(MASK_TYPES)}")
    return B, _Law(T, mask_prob, mask_length, mask_type, mask_other, min_masks, no_overlap, min_space)


def _valid_frames(lengths, B: int, T: int, dev: torch.device) -> torch.Tensor:
    """[B] long: valid frames per row (``lengths``, checked to lie in [0, T]; T for every row when None)."""
    if lengths is None:
        return torch.from_numpy(np.full(B, T)) if dev.type == "cpu" else torch.full((B,), T, device=dev)
    sz = torch.as_tensor(lengths, dtype=torch.long, device=dev).reshape(-1)
    if sz.shape[0] != B or bool(((sz < 0) | (sz > T)).any()):
        raise ValueError(f"lengths must be {B} values in [0, {T}], got {sz.tolist()}")
    return sz


def span_mask(
    shape,
    mask_prob: float,
    mask_length: int,
    *,
    lengths=None,
    mask_type: str = "static",
    mask_other: float = 0.0,
    min_masks: int = 0,
    no_overlap: bool = False,
    min_space: int = 0,
    same_count: bool = False,
    start_logits: torch.Tensor | None = None,
    keys=None,
    seed=None,
    epoch: int = 0,
    device=None,
) -> torch.Tensor:
    """Span mask of ``shape`` = (B, T): bool, True = masked.

    lengths:      [B] valid frames per row (right padding); padding is never masked. Default T for every
                  row.
    mask_type:    span length distribution: static | uniform | normal | poisson (``mask_other`` as in
                  fairseq).
    min_masks:    at least this many spans per row (capped so the spans fit).
    no_overlap:   place spans without overlap, at least ``min_space`` unmasked frames apart; spans that do
                  not fit are dropped (fairseq drops them too).
    same_count:   every row ends with the same masked count (the smallest row's), without splitting spans.
    start_logits: [B, T] log-weights for span starts (Ask2Mask); default uniform. Overlap mode only.
    """
    B, law = _check_law(shape, mask_prob, mask_length, mask_type, mask_other, min_masks, no_overlap, min_space)
    src = Source(B, keys, seed, epoch, device)
    sz = _valid_frames(lengths, B, law.T, src.device)
    if B == 0:
        return torch.zeros(0, law.T, dtype=torch.bool, device=src.device)
    path = _backend.path(src.device) if src.gen is None else "torch"  # a generator draws torch numbers
    if path != "torch" and law.wav2vec2_default(start_logits):
        mask = _static_spans_cpu(path, src.keys, sz.numpy(), law)
    else:
        mask = _spans_torch(src, sz, law, start_logits, padded=lengths is not None)
    return _equalize(mask, src.uniform(law.T, stream=Stream.FRAME_EQUALIZE)) if same_count else mask


def _static_spans_cpu(path: str, keys: torch.Tensor, sz: np.ndarray, law: _Law) -> torch.Tensor:
    """The wav2vec2 default on the CPU, from the same keyed draws as the torch path: the compiled kernel when
    the backend is ``kernel`` and numba is installed (:mod:`masklab.corrupt.jit`), else numpy."""
    T, p, M = law.T, law.p, law.M
    if path == "kernel" and (kern := jit.kernels()) is not None:
        k = keys.numpy().reshape(-1)
        return torch.from_numpy(
            kern.static_spans(k, keyed.np_counter(T + 1), sz, T, p / M, M, law.min_masks, law.hf_cap)
        )
    return _static_spans_np(keys, sz, law)


def _static_spans_np(keys: torch.Tensor, sz: np.ndarray, law: _Law) -> torch.Tensor:
    """The wav2vec2 default in numpy: one hash of [B, T + 1], :func:`smallest_k` with each row's span count for
    the starts, and log2(M) shifted ORs to paint the spans."""
    T, M = law.T, law.M
    B = sz.shape[0]
    bits = keyed.np_bits(keys, T + 1, Stream.FRAME_START)  # uint32 [B, T + 1]: start scores, then eps
    eps = (bits[:, T] >> np.uint32(8)).astype(np.float64) * (1.0 / (1 << 24))
    n = (sz * (law.p / M) + eps).astype(np.int64)
    if law.min_masks > 0:
        n = np.maximum(n, law.min_masks)
    if law.hf_cap:
        n = np.where(n * M > T, T // M, n)
    n_cand = np.maximum(sz - (M - 1), 0)
    n = np.minimum(n, n_cand)
    score = bits[:, : T - M + 1]
    if (n_cand < score.shape[1]).any():  # padded rows: starts only where a whole span fits
        score = np.where(np.arange(score.shape[1]) < n_cand[:, None], score, np.uint32(0xFFFFFFFF))
    mask = np.zeros((B, T), dtype=bool)  # span starts (a uniform n-subset), then the frames they cover
    mask[:, : score.shape[1]] = smallest_k(score, n)
    other = np.empty_like(mask)
    cover = 1  # mask[t] = any start in (t - cover, t]; doubling reaches M in ceil(log2 M) shifted ORs
    while cover < M:
        step = min(cover, M - cover)
        other[:, :step] = mask[:, :step]
        np.logical_or(mask[:, step:], mask[:, :-step], out=other[:, step:])
        mask, other = other, mask
        cover += step
    return torch.from_numpy(mask)


def _spans_torch(src: Source, sz: torch.Tensor, law: _Law, start_logits, padded: bool) -> torch.Tensor:
    """:func:`span_mask` before ``same_count`` in torch (any device, and a generator's draws): span counts,
    lengths, then starts with overlap or packed without it. Draws come in a fixed order (a generator is
    sequential): start scores and eps, the lengths, then the placement."""
    T, dev = law.T, src.device
    draw = src.order(T + 1, stream=Stream.FRAME_START)  # [B, T + 1]: start scores, then eps in the last column
    n = _span_counts(draw[:, T], sz, law)
    if law.wav2vec2_default(start_logits):
        return _static_spans_torch(draw, n, sz, law, padded)
    lens = _lengths(src, law)
    if law.no_overlap:
        starts, n, lens = _packed_starts(src, n, lens, sz, law)
    else:
        starts, n = _overlapping_starts(src, n, lens, sz, law, start_logits)
    lens = torch.where(torch.arange(law.n_max, device=dev) < n[:, None], lens, torch.zeros_like(lens))
    return _paint(starts, lens, sz, T)


def _span_counts(eps: torch.Tensor, sz: torch.Tensor, law: _Law) -> torch.Tensor:
    """[B] spans per row as in ``_compute_mask_indices``: ``int(p sz / M + eps)``, at least ``min_masks``, and
    HF's cap. ``eps`` [B] is one draw per example (so rows do not depend on the batch): keyed uint32 draws in
    int64 (:func:`keyed.bits`, read as their top 24 bits in [0, 1)) or a generator's floats."""
    eps = (eps >> 8).double() * (1.0 / (1 << 24)) if eps.dtype == torch.int64 else eps.double()
    n = (sz.double() * (law.p / law.M) + eps).long()  # floor: both terms are >= 0
    if law.min_masks > 0:
        n = n.clamp(min=law.min_masks)
    if law.hf_cap:
        n = torch.where(n * law.M > law.T, torch.full_like(n, law.T // law.M), n)
    return n


def _static_spans_torch(draw: torch.Tensor, n: torch.Tensor, sz: torch.Tensor, law: _Law, padded: bool):
    """The wav2vec2 default in torch: distinct uniform starts in [0, sz - M] (the n smallest scores of ``draw``,
    ties to the earlier start), spans of exactly M."""
    B, T, M, n_max = draw.shape[0], law.T, law.M, law.n_max
    dev = draw.device
    score = draw[:, : T - M + 1]
    pos = torch.arange(score.shape[1], device=dev)
    if score.dtype == torch.int64:  # keyed uint32 draws: ties go to the earlier position, as on the CPU
        score = (score << score.shape[1].bit_length()) | pos
    if padded:
        n_cand = (sz - (M - 1)).clamp(min=0)
        n = torch.minimum(n, n_cand)
        big = torch.iinfo(score.dtype).max if score.dtype == torch.int64 else 2.0
        score = score.masked_fill(pos >= n_cand[:, None], big)
    elif n_max > T - M + 1:
        n = n.clamp(max=T - M + 1)
    starts = score.topk(n_max, dim=1, largest=False, sorted=True).indices  # first n: a uniform n-subset
    starts = starts.masked_fill(torch.arange(n_max, device=dev) >= n[:, None], T)  # unused spans -> a scratch column
    mask = torch.zeros(B, T + M, dtype=torch.bool, device=dev)
    mask.scatter_(1, (starts[:, :, None] + torch.arange(M, device=dev)).view(B, -1), True)
    return mask[:, :T]


def _lengths(src: Source, law: _Law) -> torch.Tensor:
    """[B, n_max] span lengths: M each (static), else :func:`span_lengths` of two uniform streams."""
    if law.mask_type == "static":
        return torch.full((src.batch, law.n_max), law.M, dtype=torch.long, device=src.device)
    u = src.uniform(law.n_max, Stream.FRAME_LENGTH)
    u2 = src.uniform(law.n_max, Stream.FRAME_LENGTH2)
    return span_lengths(u, u2, law.mask_type, law.M, law.mask_other)


def _overlapping_starts(src: Source, n, lens, sz, law: _Law, start_logits):
    """Starts [B, n_max] and span counts [B] with overlap allowed: n distinct starts among those where the
    shortest drawn span fits, uniform or weighted by ``start_logits`` (Efraimidis-Spirakis: the n smallest
    E / w, E ~ Exp(1), samples ~ w without replacement). Each start is paired with a length in ``lens``."""
    T, static = law.T, law.mask_type == "static"
    j = torch.arange(law.n_max, device=src.device)
    min_len = torch.where(j < n[:, None], lens, torch.full_like(lens, T + 1)).amin(1)
    min_len = law.M if static else min_len.clamp(max=T)
    n_cand = (sz - min_len + (1 if static else 0)).clamp(min=0)  # HF: sz - (M - 1) starts
    n = torch.minimum(n, n_cand)
    score = src.uniform(T, stream=Stream.FRAME_START)
    if start_logits is not None:
        score = -torch.log(score.double() + 2**-25) / start_logits.double().exp().clamp(min=1e-30)
    score = torch.where(
        torch.arange(T, device=src.device) < n_cand[:, None], score, torch.full_like(score, float("inf"))
    )
    return smallest_indices(score, law.n_max), n  # first n: a uniform n-subset


def _packed_starts(src: Source, n, lens, sz, law: _Law):
    """Starts [B, n_max], span counts [B] and lengths without overlap, at least ``min_space`` frames apart:
    spans that do not fit are dropped, then n distinct slots among ``free + n`` (spans interleaved with the
    free frames, stars and bars) place all of them at once, uniformly over all such placements."""
    T, n_max, gap = law.T, law.n_max, law.min_space
    j = torch.arange(n_max, device=src.device)
    active = j < n[:, None]
    lens = lens * active
    need = (lens + gap).cumsum(1) - gap  # frames used by spans 0..j with gaps
    fit = active & (need <= sz[:, None])
    n = fit.sum(1)
    lens = lens * fit
    used = torch.where(n > 0, need.gather(1, (n - 1).clamp(min=0)[:, None])[:, 0], torch.zeros_like(n))
    free = sz - used  # unmasked frames beyond the minimum gaps
    m = T + n_max
    score = src.uniform(m, stream=Stream.FRAME_SLOT)
    score = torch.where(
        torch.arange(m, device=src.device) < (free + n)[:, None], score, torch.full_like(score, float("inf"))
    )
    slots = smallest_indices(score, n_max)
    slots = torch.where(j < n[:, None], slots, torch.full_like(slots, 2 * m)).sort(1).values
    before = (lens + gap).cumsum(1) - (lens + gap)  # span frames + gaps before span j
    return (slots - j + before).clamp(max=T), n, lens


def ask2mask(
    confidence: torch.Tensor,
    mask_prob: float = 0.65,
    mask_length: int = 10,
    *,
    lengths=None,
    temperature: float = 1.0,
    weight_reference: float = 1.0,
    keys=None,
    seed=None,
    epoch: int = 0,
    **span_kw,
) -> FrameMask:
    """Ask2Mask: span starts drawn without replacement with probability proportional to
    ``confidence ** (1 / temperature)`` (a scorer's per-frame confidence in [0, 1], [B, T]); utterance weights
    are the mean confidence over valid frames (Ask2Mask's utterance-level score), divided by
    ``weight_reference``: a fixed number such as the training corpus's mean utterance confidence, so that the mean
    weight is about 1 without making any utterance's weight depend on the others in its batch.

    temperature -> 0 takes the most confident frames; temperature -> inf is plain :func:`span_mask`.
    """
    if confidence.dim() != 2:
        raise ValueError(f"confidence must be [B, T], got shape {tuple(confidence.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if isinstance(weight_reference, bool) or not isinstance(weight_reference, numbers.Real) or not weight_reference > 0:
        raise ValueError(f"weight_reference must be a positive number, got {weight_reference!r}")
    if bool(((confidence < 0) | (confidence > 1)).any()):
        raise ValueError("confidence must lie in [0, 1]")
    B, T = confidence.shape
    # float64 throughout, rounded once at the end: float32 logs and sums differ by an ulp between CPU and CUDA
    # (other reduction order, other log), which moved utterance weights in 83 of 120 settings on an H200
    conf = confidence.double()
    logits = torch.log(conf.clamp(min=1e-12)) / temperature
    mask = span_mask(
        (B, T),
        mask_prob,
        mask_length,
        lengths=lengths,
        start_logits=logits,
        keys=keys,
        seed=seed,
        epoch=epoch,
        device=confidence.device,
        **span_kw,
    )
    sz = torch.full((B,), T, device=conf.device) if lengths is None else torch.as_tensor(lengths, device=conf.device)
    valid = torch.arange(T, device=conf.device) < sz[:, None]
    w = (conf * valid).sum(1) / valid.sum(1).clamp(min=1)  # (B,) mean valid-frame confidence of each utterance
    return FrameMask(mask, (w / float(weight_reference)).float())
