"""ERNIE-Gram explicit n-gram masking (Xiao et al. 2021): PMI lexicon from corpus counts, whole n-gram units,
one mask token per collapsed n-gram with its V_N identity, fine-grained targets kept."""

import math

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
    lex = NgramLexicon.build(corpus, V, size=3, min_count=5, special_ids=SPECIAL)
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
    assert abs(float(lex.pmi[j]) - want) < 1e-9


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
