"""ERNIE-Gram explicit n-gram masking (Xiao et al. 2021): t-test and PMI lexicons from corpus counts, whole n-gram
units, one mask token per collapsed n-gram with its V_N identity, fine-grained targets kept."""

import math
from collections import Counter

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.ngram import NgramLexicon, ngram_mask

SPECIAL, MASK, PAD, V = [0, 1, 2, 3], 3, 0, 2000


@pytest.fixture(scope="module")
def corpus():
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(100, 600, (400, 40), generator=g)
    seqs[:, 5:8] = torch.tensor([7, 8, 9])  # planted collocations: "7 8 9" and "20 21"
    seqs[::2, 20:22] = torch.tensor([20, 21])
    return seqs


def test_lexicon_pmi_matches_counts(corpus):
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL, score="pmi")
    grams = {tuple(t[t >= 0].tolist()) for t in lex.tokens}
    assert {(7, 8, 9), (7, 8), (8, 9), (20, 21)} <= grams
    # reference PMI of "20 21" from raw counts
    flat = corpus.reshape(-1)
    n1 = flat.numel()
    c20, c21 = int((flat == 20).sum()), int((flat == 21).sum())
    n2 = corpus.shape[0] * (corpus.shape[1] - 1)
    c = int(((corpus[:, :-1] == 20) & (corpus[:, 1:] == 21)).sum())
    want = math.log(c / n2) - math.log(c20 / n1) - math.log(c21 / n1)
    j = [i for i, t in enumerate(lex.tokens.tolist()) if t[:2] == [20, 21] and lex.n[i] == 2][0]
    assert abs(float(lex.score[j]) - want) < 1e-9 and lex.statistic == "pmi"


def test_lexicon_t_statistic_equals_its_formula_on_a_toy_corpus():
    """ERNIE-Gram ranks n-grams by the t-test of "the n tokens occur independently": t = (p(w) - prod p(x_i)) /
    sqrt(p(w)(1 - p(w)) / N), N the n-token windows (never across rows or special tokens), recounted here by
    hand with Counter."""
    rows = [[5, 6, 7, 5, 6, 8, 1, 5, 6, 7], [6, 7, 5, 6, 9, 9, 5, 6], [7, 5, 6, 7, 8]]
    special = [1]
    lex = NgramLexicon.build(rows, 10, size=100, min_count=2, special_ids=special)
    pieces = []  # maximal runs without a special token, each row on its own
    for r in rows:
        piece = []
        for t in [*r, special[0]]:
            if t in special:
                pieces, piece = [*pieces, piece], []
            else:
                piece.append(t)
    unigrams = Counter(t for p in pieces for t in p)
    total = sum(unigrams.values())
    got = {tuple(t[t >= 0].tolist()): float(s) for t, s in zip(lex.tokens, lex.score, strict=True)}
    for n in (2, 3):
        grams = Counter(tuple(p[i : i + n]) for p in pieces for i in range(len(p) - n + 1))
        N = sum(grams.values())
        for w, c in grams.items():
            if c < 2:
                assert w not in got
                continue
            p = c / N
            indep = math.prod(unigrams[x] / total for x in w)
            assert got[w] == pytest.approx((p - indep) / math.sqrt(p * (1 - p) / N), rel=1e-12)
    assert got[(5, 6)] > got[(6, 7)] and lex.statistic == "tstat"  # 5 6 is the most frequent collocation
    with pytest.raises(ValueError, match="score must be one of"):
        NgramLexicon.build(rows, 10, score="chi2")


def test_lookup_and_errors(corpus):
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5)
    row = torch.tensor([[1, 7, 8, 9, 5]])
    tri = lex.lookup(row, 3)
    assert tri[0, 1] >= 0 and lex.tokens[tri[0, 1]].tolist() == [7, 8, 9] and (tri[0, [0, 2, 3, 4]] == -1).all()
    with pytest.raises(ValueError, match="min_count"):
        NgramLexicon.build(corpus[:1], V, min_count=10)
    with pytest.raises(ValueError, match="empty"):
        NgramLexicon.build([], V)


def test_units_are_whole_lexicon_ngrams_and_never_overlap(corpus):
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL)
    ids = torch.cat([torch.ones(400, 1, dtype=torch.long), corpus, torch.full((400, 1), 2)], 1)
    keys = keyed.example_keys(0, 0, range(400))
    c = ngram_mask(ids, keys, lex, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.15)
    sel = c.mask
    assert not sel[:, 0].any() and not sel[:, -1].any()
    # planted trigram positions 6..8: masked all together or not at all whenever it was chosen as a unit
    tri = c.ngram_targets[:, 6] >= 0
    assert tri.sum() > 10 and sel[tri][:, 6:9].all()
    assert (lex.tokens[c.ngram_targets[:, 6][tri]][:, :3] == torch.tensor([7, 8, 9])).all()
    # fine-grained targets of every unit are the original tokens
    f = c.fine_targets[c.ngram_targets >= 0]
    assert ((f == -100) | (f >= 4)).all()
    frac = sel.float().sum() / (ids >= 4).sum()
    assert 0.10 < float(frac) < 0.22  # about prob


def test_collapse_one_mask_token_per_ngram_and_reconstructs(corpus):
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL)
    ids = torch.cat([torch.ones(64, 1, dtype=torch.long), corpus[:64], torch.full((64, 1), 2)], 1)
    ids[:8, -10:] = PAD  # ragged rows
    keys = keyed.example_keys(0, 0, range(64))
    c = ngram_mask(ids, keys, lex, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.3, collapse=True)
    for r in range(64):
        n = int(c.attention_mask[r].sum())
        rebuilt = []
        for j in range(n):
            if c.mask[r, j]:
                f = c.fine_targets[r, j]
                rebuilt += f[f != -100].tolist()
                assert c.inputs[r, j] == MASK
            else:
                rebuilt.append(int(c.inputs[r, j]))
        want = ids[r][ids[r] != PAD].tolist()
        assert rebuilt == want
        assert (c.inputs[r, n:] == PAD).all()
    multi = c.ngram_targets >= 0
    assert multi.any() and (lex.n[c.ngram_targets[multi]] >= 2).all()
    assert (c.inputs[multi] == MASK).all()


def test_max_tokens_keeps_whole_units_in_row_order(corpus):
    """The cap (BERT's max_predictions_per_seq) drops whole units from the end of a row: the kept units are the
    uncapped draw's first units, and no row masks more tokens than the cap."""
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL)
    keys = keyed.example_keys(0, 0, range(400))
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.3)
    free = ngram_mask(corpus, keys, lex, **kw)
    capped = ngram_mask(corpus, keys, lex, max_tokens=8, **kw)
    assert int(free.mask.sum(1).max()) > 8 and int(capped.mask.sum(1).max()) <= 8
    starts_free = (free.fine_targets[..., 0] != -100).long()
    starts_cap = (capped.fine_targets[..., 0] != -100).long()
    kept = starts_cap.sum(1)
    first = (starts_free.cumsum(1) <= kept[:, None]) & (starts_free == 1)
    assert torch.equal(first.long(), starts_cap)  # a prefix of the uncapped units
    assert not (capped.mask & ~free.mask).any()
    assert torch.equal(capped.fine_targets[starts_cap.bool()], free.fine_targets[starts_cap.bool()])


def test_collapse_to_a_fixed_length_pads_the_same_rows(corpus):
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL)
    keys = keyed.example_keys(0, 0, range(64))
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.3, collapse=True, pad_id=PAD)
    short = ngram_mask(corpus[:64], keys, lex, **kw)
    fixed = ngram_mask(corpus[:64], keys, lex, length=48, **kw)
    Lp = short.inputs.shape[1]
    assert fixed.inputs.shape == (64, 48) and Lp <= 40
    for f in ("inputs", "targets", "mask", "ngram_targets", "fine_targets", "attention_mask", "source"):
        assert torch.equal(getattr(fixed, f)[:, :Lp], getattr(short, f)), f
    assert (fixed.inputs[:, Lp:] == PAD).all() and (fixed.source[:, Lp:] == -1).all()
    with pytest.raises(ValueError, match="length"):
        ngram_mask(corpus[:64], keys, lex, **{**kw, "length": 10})
