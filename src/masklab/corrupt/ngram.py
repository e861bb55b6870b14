"""Explicit n-gram masking (ERNIE-Gram, Xiao et al. 2021, Sec. 3.2 and 3.3).

ERNIE-Gram masks whole n-grams (n <= 3) taken from a lexicon, and predicts each masked n-gram twice: as one
identity in an n-gram vocabulary V_N (explicit n-gram prediction, Eq. 4, with the n-gram collapsed to one mask
token) and as its fine-grained tokens (Eq. 5). The lexicon here is built from corpus statistics: every n-gram
(2 <= n <= max_n) seen at least ``min_count`` times is scored by pointwise mutual information, PMI(w1..wn) =
log p(w1..wn) - sum_i log p(wi), and the best ``size`` per n are kept. (ERNIE-Gram ranks its lexicon with a
t-test; PMI is the statistic this library's issue asks for.)

Masking is vectorized: every position looks up the longest lexicon n-gram that starts there (one
``searchsorted`` per n), becomes a unit start with probability ``prob / n`` (so the expected masked fraction
is about ``prob``), and a start inside an earlier chosen unit is dropped (one running maximum), so units never
overlap. ``collapse=True`` turns each unit into one mask token and shortens the row.
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

__all__ = ["NgramLexicon", "NgramCorruption", "ngram_mask"]


def _encode(windows: torch.Tensor, base: int) -> torch.Tensor:
    """One int64 key per n-gram [..., n] (positions past n hold ``base - 1``)."""
    key = torch.zeros(windows.shape[:-1], dtype=torch.long, device=windows.device)
    for k in range(windows.shape[-1]):
        key = key * base + windows[..., k]
    return key


@dataclass
class NgramLexicon:
    """N-gram vocabulary V_N. ``tokens[j]`` [max_n] holds the tokens of n-gram j (-1 padded), ``n[j]`` its
    length.

    ``keys`` holds the sorted encoded n-grams and ``index`` the n-gram id of each key.
    """

    tokens: torch.Tensor
    n: torch.Tensor
    pmi: torch.Tensor
    keys: torch.Tensor
    index: torch.Tensor
    vocab_size: int
    max_n: int

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
    ) -> NgramLexicon:
        """Count n-grams (2 <= n <= max_n) of ``sequences`` (never across sequences or special tokens); keep
        the ``size`` n-grams of highest PMI per n among those seen at least ``min_count`` times."""
        if not 2 <= max_n <= 3:
            raise ValueError(f"max_n must be 2 or 3, got {max_n}")
        base = vocab_size + 1
        if base**max_n >= 2**62:
            raise ValueError(f"vocab_size {vocab_size} too large to encode {max_n}-grams in int64")
        if torch.is_tensor(sequences):
            rows = [r for r in sequences.long()]
        else:
            rows = [torch.as_tensor(list(s), dtype=torch.long) for s in sequences]
        if not rows:
            raise ValueError("cannot build an n-gram lexicon from an empty corpus")
        sep = torch.tensor([-1])
        flat = torch.cat([t for r in rows for t in (r, sep)])
        flat = torch.where(torch.isin(flat, torch.as_tensor(list(special_ids), dtype=torch.long)), -1, flat)
        good = flat >= 0
        uni = torch.bincount(flat[good], minlength=vocab_size).double()
        logp1 = torch.log(uni.clamp(min=1) / uni.sum())
        toks, lens, pmis = [], [], []
        for n in range(2, max_n + 1):
            win = flat.unfold(0, n, 1)
            win = win[(win >= 0).all(dim=1)]
            if len(win) == 0:
                continue
            uniq, cnt = torch.unique(win, dim=0, return_counts=True)
            pmi = torch.log(cnt.double() / len(win)) - logp1[uniq].sum(dim=1)
            keep = cnt >= min_count
            uniq, pmi = uniq[keep], pmi[keep]
            top = pmi.argsort(descending=True, stable=True)[:size]
            pad = torch.full((len(top), max_n), -1, dtype=torch.long)
            pad[:, :n] = uniq[top]
            toks.append(pad)
            lens.append(torch.full((len(top),), n, dtype=torch.long))
            pmis.append(pmi[top])
        if not toks or sum(len(t) for t in toks) == 0:
            raise ValueError(f"no n-gram occurs at least min_count={min_count} times in the corpus")
        tokens, n, pmi = torch.cat(toks), torch.cat(lens), torch.cat(pmis)
        return cls.from_tokens(tokens, n, pmi, vocab_size)

    @classmethod
    def from_tokens(cls, tokens: torch.Tensor, n: torch.Tensor, pmi: torch.Tensor, vocab_size: int) -> NgramLexicon:
        base = vocab_size + 1
        keys = _encode(torch.where(tokens >= 0, tokens, vocab_size), base)
        order = keys.argsort()
        return cls(tokens, n, pmi, keys[order], order, vocab_size, tokens.shape[1])

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
) -> NgramCorruption:
    """ERNIE-Gram n-gram masking of ``ids`` [B, L].

    collapse=False: every token of a chosen unit is corrupted (mix drawn once per unit); ``targets`` are the
    fine-grained tokens, ``ngram_targets`` sit on the unit's first token. collapse=True: each chosen unit
    becomes ONE mask token (mix is not used), the row shortens, ``targets`` hold the unit's first token and
    ``fine_targets`` all of its tokens.
    """
    check_ids(ids, keys)
    check_prob("prob", prob)
    dev = ids.device
    B, L = ids.shape
    ok = eligible(ids, special_ids)
    if can is not None:
        ok = ok & can
    clean = torch.where(ok, ids, torch.full_like(ids, -1))  # n-grams never cross special or pad tokens
    n_at = torch.ones_like(ids)
    ng_at = torch.full_like(ids, -1)
    for n in range(2, lexicon.max_n + 1):  # longer matches win
        hit = lexicon.lookup(clean, n)
        n_at = torch.where(hit >= 0, torch.full_like(n_at, n), n_at)
        ng_at = torch.where(hit >= 0, hit, ng_at)
    pos = torch.arange(L, device=dev).expand(B, L)
    u = keyed.uniform(keys, L, stream=Stream.NGRAM_START)
    start = ok & (u < prob / n_at.float())
    end = torch.where(start, pos + n_at, torch.zeros_like(pos))
    reach_before = torch.cat([torch.zeros_like(end[:, :1]), torch.cummax(end, dim=1).values[:, :-1]], dim=1)
    start = start & (reach_before <= pos)  # drop starts inside an earlier chosen unit
    end = torch.where(start, pos + n_at, torch.zeros_like(pos))
    reach = torch.cummax(end, dim=1).values
    covered = (reach > pos) & ok
    unit_start = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), dim=1).values  # (B, L)
    ngram_t = torch.where(start & (n_at >= 2), ng_at, torch.full_like(ids, IGNORE_INDEX))
    offs = torch.arange(lexicon.max_n, device=dev)
    src = (pos[..., None] + offs).clamp(max=L - 1)  # (B, L, max_n)
    fine = torch.where(
        start[..., None] & (offs < n_at[..., None]),
        ids.gather(1, src.reshape(B, -1)).reshape(B, L, -1),
        torch.full_like(src, IGNORE_INDEX),
    )
    if not collapse:
        role_u = keyed.uniform(keys, L, stream=Stream.NGRAM_ROLE).gather(1, unit_start)
        pool = replacement_pool(vocab_size, special_ids, dev)
        c = apply_mix(ids, covered, keys, mask_id=mask_id, pool=pool, mix=mix, role_u=role_u)
        return NgramCorruption(
            c.inputs, c.targets, c.mask, c.weights, c.kind, ngram_t, fine, torch.ones_like(ids), pos.clone()
        )
    # collapse: keep non-covered tokens and unit starts; compact each row to the left
    keep = ~covered | start
    real = keep & ((ids != pad_id) | ok)
    new_pos = real.long().cumsum(dim=1) - 1
    Lp = max(int(real.sum(dim=1).max()), 1)
    dest = torch.where(real, new_pos, torch.full_like(new_pos, Lp))

    def compact(x: torch.Tensor, fill) -> torch.Tensor:
        shape = (B, Lp + 1) + tuple(x.shape[2:])
        out = torch.full(shape, fill, dtype=x.dtype, device=dev)
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
