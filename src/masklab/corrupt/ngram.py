"""Explicit n-gram masking (ERNIE-Gram, Xiao et al. 2021, Sec. 3.2 and 3.3).

ERNIE-Gram masks whole n-grams (n <= 3) taken from a lexicon, and predicts each masked n-gram twice: as one
identity in an n-gram vocabulary V_N (explicit n-gram prediction, Eq. 4, with the n-gram collapsed to one mask
token) and as its fine-grained tokens (Eq. 5). The lexicon is built from corpus statistics: every n-gram
(2 <= n <= max_n) seen at least ``min_count`` times is scored and the best ``size`` per n are kept. The score is
the paper's t-test (``score="tstat"``, the default: ERNIE-Gram extracts its lexicon "by t-test", the collocation
t-test of Manning & Schuetze 1999, Sec. 5.3.1),

    t(w) = (p(w) - prod_i p(x_i)) / sqrt(s^2 / N),   p(w) = c(w) / N,   s^2 = p(w) (1 - p(w)),

with ``N`` the number of n-token windows of the corpus (never across sequences or special tokens), ``c(w)`` the
count of the n-gram ``w = x_1 .. x_n``, ``p(x_i)`` the unigram frequencies and ``s^2`` the Bernoulli variance of
an n-gram indicator (Manning & Schuetze approximate it by ``p(w)``); the null hypothesis is that the n tokens
occur independently. ``score="pmi"`` ranks by pointwise mutual information instead,
PMI(w) = log p(w) - sum_i log p(x_i).

Masking is vectorized: every position looks up the longest lexicon n-gram that starts there (one
``searchsorted`` per n), becomes a unit start with probability ``prob / n`` (so the expected masked fraction
is about ``prob``), and a start inside an earlier chosen unit is dropped (one running maximum), so units never
overlap. ``max_tokens`` caps the masked tokens of a row (whole units past the cap, in row order, are dropped:
BERT's ``max_predictions_per_seq``). ``collapse=True`` turns each unit into one mask token and shortens the row
(to ``length`` columns when given, else to the longest row).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, Corruption
from masklab.corrupt.tokens import apply_mix, check_ids, eligible, replacement_pool

__all__ = ["NgramLexicon", "NgramCorruption", "ngram_mask", "SCORES"]

SCORES = ("tstat", "pmi")  # how a lexicon ranks its n-grams: the t-test (ERNIE-Gram) or PMI


def _encode(windows: torch.Tensor, base: int) -> torch.Tensor:
    """One int64 key per n-gram [..., n] (positions past n hold ``base - 1``)."""
    key = torch.zeros(windows.shape[:-1], dtype=torch.long, device=windows.device)
    for k in range(windows.shape[-1]):
        key = key * base + windows[..., k]
    return key


def _flat_corpus(sequences, special_ids) -> torch.Tensor:
    """All sequences in one 1-D tensor, each followed by -1; special tokens are -1 too (n-grams never span them)."""
    if torch.is_tensor(sequences):
        rows = [r for r in sequences.long()]
    else:
        rows = [torch.as_tensor(list(s), dtype=torch.long) for s in sequences]
    if not rows:
        raise ValueError("cannot build an n-gram lexicon from an empty corpus")
    sep = torch.tensor([-1])
    flat = torch.cat([t for r in rows for t in (r, sep)])
    return torch.where(torch.isin(flat, torch.as_tensor(list(special_ids), dtype=torch.long)), -1, flat)


def _score(statistic: str, count: torch.Tensor, windows: int, log_indep: torch.Tensor) -> torch.Tensor:
    """The ranking statistic of n-grams seen ``count`` times among ``windows`` n-token windows, whose tokens'
    log-probabilities sum to ``log_indep`` (the log of the independence hypothesis, prod_i p(x_i))."""
    p = count / windows  # p(w), the mean of an n-gram indicator over the N windows
    if statistic == "pmi":
        return torch.log(p) - log_indep
    s2 = (p * (1 - p)).clamp(min=1e-300)  # Bernoulli variance of the indicator
    return (p - log_indep.exp()) / torch.sqrt(s2 / windows)


@dataclass
class NgramLexicon:
    """N-gram vocabulary V_N. ``tokens[j]`` [max_n] holds the tokens of n-gram j (-1 padded), ``n[j]`` its
    length and ``score[j]`` the statistic it was ranked by (``statistic``: "tstat" or "pmi").

    ``keys`` holds the sorted encoded n-grams and ``index`` the n-gram id of each key.
    """

    tokens: torch.Tensor
    n: torch.Tensor
    score: torch.Tensor
    keys: torch.Tensor
    index: torch.Tensor
    vocab_size: int
    max_n: int
    statistic: str = "tstat"

    def __len__(self) -> int:
        return int(self.n.numel())

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[int]] | torch.Tensor,
        vocab_size: int,
        *,
        max_n: int = 3,
        size: int = 10_000,
        min_count: int = 2,
        special_ids: Sequence[int] = (),
        score: str = "tstat",
    ) -> NgramLexicon:
        """Count n-grams (2 <= n <= max_n) of ``sequences`` (never across sequences or special tokens); keep
        the ``size`` n-grams of highest ``score`` (t-statistic or PMI, see the module docstring) per n among
        those seen at least ``min_count`` times."""
        if not 2 <= max_n <= 3:
            raise ValueError(f"max_n must be 2 or 3, got {max_n}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        base = vocab_size + 1
        if base**max_n >= 2**62:
            raise ValueError(f"vocab_size {vocab_size} too large to encode {max_n}-grams in int64")
        flat = _flat_corpus(sequences, special_ids)
        good = flat >= 0
        uni = torch.bincount(flat[good], minlength=vocab_size).double()
        logp1 = torch.log(uni.clamp(min=1) / uni.sum())  # log p(x), unigram frequencies
        toks, lens, scores = [], [], []
        for n in range(2, max_n + 1):
            win = flat.unfold(0, n, 1)
            win = win[(win >= 0).all(dim=1)]  # (N, n) windows inside one sequence, no special token
            if len(win) == 0:
                continue
            uniq, cnt = torch.unique(win, dim=0, return_counts=True)
            keep = cnt >= min_count
            uniq, cnt = uniq[keep], cnt[keep]
            stat = _score(score, cnt.double(), len(win), logp1[uniq].sum(dim=1))
            top = stat.argsort(descending=True, stable=True)[:size]
            pad = torch.full((len(top), max_n), -1, dtype=torch.long)
            pad[:, :n] = uniq[top]
            toks.append(pad)
            lens.append(torch.full((len(top),), n, dtype=torch.long))
            scores.append(stat[top])
        if not toks or sum(len(t) for t in toks) == 0:
            raise ValueError(f"no n-gram occurs at least min_count={min_count} times in the corpus")
        return cls.from_tokens(torch.cat(toks), torch.cat(lens), torch.cat(scores), vocab_size, statistic=score)

    @classmethod
    def from_tokens(
        cls, tokens: torch.Tensor, n: torch.Tensor, score: torch.Tensor, vocab_size: int, statistic: str = "tstat"
    ) -> NgramLexicon:
        """A lexicon of the n-grams ``tokens`` [N, max_n] (-1 padded) of lengths ``n`` [N]."""
        base = vocab_size + 1
        keys = _encode(torch.where(tokens >= 0, tokens, vocab_size), base)
        order = keys.argsort()
        return cls(tokens, n, score, keys[order], order, vocab_size, tokens.shape[1], statistic)

    def lookup(self, ids: torch.Tensor, n: int) -> torch.Tensor:
        """[B, L] id of the lexicon n-gram ``ids[b, i:i+n]``, -1 where there is none."""
        B, L = ids.shape
        base = self.vocab_size + 1
        padded = torch.cat([ids, torch.full((B, n - 1), -1, dtype=ids.dtype, device=ids.device)], dim=1)
        win = padded.unfold(1, n, 1)  # (B, L, n)
        valid = (win >= 0).all(dim=-1) & (win < self.vocab_size).all(dim=-1)
        if n < self.max_n:
            win = torch.cat(
                [
                    win,
                    torch.full((B, L, self.max_n - n), self.vocab_size, dtype=win.dtype, device=win.device),
                ],
                dim=-1,
            )
        key = _encode(win.clamp(min=0), base)
        keys = self.keys.to(ids.device)
        pos = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
        hit = valid & (keys[pos] == key)
        return torch.where(hit, self.index.to(ids.device)[pos], torch.full_like(key, -1))


@dataclass
class NgramCorruption(Corruption):
    """A Corruption plus ERNIE-Gram's targets.

    ngram_targets:  [B, L'] n-gram id (in the lexicon) at the first position of each masked n-gram, n >= 2.
    fine_targets:   [B, L', max_n] the original tokens of the unit masked at each position (-100 padded).
    attention_mask: [B, L'] 1 on real positions (rows shorten when ``collapse=True``).
    source:         [B, L'] position of each output token in the input row (-1 on padding).
    """

    ngram_targets: torch.Tensor | None = None
    fine_targets: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    source: torch.Tensor | None = None


def ngram_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    lexicon: NgramLexicon,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    collapse: bool = False,
    pad_id: int = 0,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    can: torch.Tensor | None = None,
    max_tokens: int | None = None,
    length: int | None = None,
) -> NgramCorruption:
    """ERNIE-Gram n-gram masking of ``ids`` [B, L].

    collapse=False: every token of a chosen unit is corrupted (mix drawn once per unit); ``targets`` are the
    fine-grained tokens, ``ngram_targets`` sit on the unit's first token. collapse=True: each chosen unit
    becomes ONE mask token (mix is not used), the row shortens (to ``length`` columns when given), ``targets``
    hold the unit's first token and ``fine_targets`` all of its tokens. ``max_tokens``: at most this many masked
    tokens per row (later whole units are dropped).
    """
    check_ids(ids, keys)
    check_prob("prob", prob)
    if max_tokens is not None and max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    if length is not None and (not collapse or length < ids.shape[1]):
        raise ValueError(f"length must be given with collapse=True and be >= the row length {ids.shape[1]}")
    B, L = ids.shape
    ok = eligible(ids, special_ids)
    if can is not None:
        ok = ok & can
    n_at, ng_at = _longest_matches(torch.where(ok, ids, torch.full_like(ids, -1)), lexicon)
    pos = torch.arange(L, device=ids.device).expand(B, L)
    start = _unit_starts(ok, n_at, pos, keyed.uniform(keys, L, stream=Stream.NGRAM_START), prob, max_tokens)
    covered = (_reach(start, n_at, pos) > pos) & ok
    ngram_t = torch.where(start & (n_at >= 2), ng_at, torch.full_like(ids, IGNORE_INDEX))
    offs = torch.arange(lexicon.max_n, device=ids.device)
    src = (pos[..., None] + offs).clamp(max=L - 1)  # (B, L, max_n)
    fine = torch.where(
        start[..., None] & (offs < n_at[..., None]),
        ids.gather(1, src.reshape(B, -1)).reshape(B, L, -1),
        torch.full_like(src, IGNORE_INDEX),
    )
    if not collapse:
        unit_start = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), dim=1).values  # (B, L)
        role_u = keyed.uniform(keys, L, stream=Stream.NGRAM_ROLE).gather(1, unit_start)
        pool = replacement_pool(vocab_size, special_ids, ids.device)
        c = apply_mix(ids, covered, keys, mask_id=mask_id, pool=pool, mix=mix, role_u=role_u)
        return NgramCorruption(
            c.inputs, c.targets, c.mask, c.weights, c.kind, ngram_t, fine, torch.ones_like(ids), pos.clone()
        )
    return _collapse(ids, ok, start, covered, pos, ngram_t, fine, mask_id=mask_id, pad_id=pad_id, length=length)


def _longest_matches(clean: torch.Tensor, lexicon: NgramLexicon) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_at, ng_at) [B, L]: the length of the longest lexicon n-gram starting at each position (1: none) and its
    lexicon id (-1: none). ``clean`` holds -1 at ineligible positions, so n-grams never cross them."""
    n_at = torch.ones_like(clean)
    ng_at = torch.full_like(clean, -1)
    for n in range(2, lexicon.max_n + 1):  # longer matches win
        hit = lexicon.lookup(clean, n)
        n_at = torch.where(hit >= 0, torch.full_like(n_at, n), n_at)
        ng_at = torch.where(hit >= 0, hit, ng_at)
    return n_at, ng_at


def _reach(start: torch.Tensor, n_at: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """[B, L] the end (exclusive) of the furthest unit that starts at or before each position."""
    return torch.cummax(torch.where(start, pos + n_at, torch.zeros_like(pos)), dim=1).values


def _unit_starts(ok, n_at, pos, u, prob: float, max_tokens: int | None) -> torch.Tensor:
    """[B, L] bool unit starts: each eligible position with probability ``prob / n`` (n its unit length), less
    the starts inside an earlier chosen unit, less the units past ``max_tokens`` masked tokens."""
    start = ok & (u < prob / n_at.float())
    reach_before = torch.cat([torch.zeros_like(pos[:, :1]), _reach(start, n_at, pos)[:, :-1]], dim=1)
    start = start & (reach_before <= pos)  # drop starts inside an earlier chosen unit
    if max_tokens is not None:  # masked tokens up to and including each unit, in row order
        start = start & ((start * n_at).cumsum(dim=1) <= max_tokens)
    return start


def _collapse(ids, ok, start, covered, pos, ngram_t, fine, *, mask_id: int, pad_id: int, length: int | None):
    """Each unit as ONE mask token at its first position; rows compacted to the left (ERNIE-Gram's explicitly
    masked sequence, Eq. 4), ``length`` columns or the longest row's."""
    B = ids.shape[0]
    keep = ~covered | start
    real = keep & ((ids != pad_id) | ok)
    new_pos = real.long().cumsum(dim=1) - 1
    Lp = length if length is not None else max(int(real.sum(dim=1).max()), 1)
    dest = torch.where(real, new_pos, torch.full_like(new_pos, Lp))

    def compact(x: torch.Tensor, fill) -> torch.Tensor:
        shape = (B, Lp + 1) + tuple(x.shape[2:])
        out = torch.full(shape, fill, dtype=x.dtype, device=ids.device)
        idx = dest if x.dim() == 2 else dest[..., None].expand_as(x)
        return out.scatter_(1, idx, x)[:, :Lp]

    inputs = torch.where(start, torch.full_like(ids, mask_id), ids)
    targets = torch.where(start, ids, torch.full_like(ids, IGNORE_INDEX))
    kind = torch.where(start, MASKED, 0).to(torch.int8)
    return NgramCorruption(
        compact(inputs, pad_id),
        compact(targets, IGNORE_INDEX),
        compact(start, False),
        None,
        compact(kind, 0),
        compact(ngram_t, IGNORE_INDEX),
        compact(fine, IGNORE_INDEX),
        compact(real.long(), 0),
        compact(pos, -1),
    )
