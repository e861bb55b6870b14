"""The DIJA corpus: labels exact by construction, a seeded held-out split, and the attack-success scorer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.dija import (
    COLOURS,
    HAZARDOUS,
    KEYWORD,
    REFUSAL,
    REFUSAL_MARKERS,
    SECTIONS,
    STAGES,
    TOPICS,
    answer,
    dija_corpus,
    generated_spans,
    requests,
    score,
)
from masklab.data.tokenizers import byte_tokenizer


def test_every_banned_request_is_refused_and_only_those():
    every = requests()
    assert len({r.text for r in every}) == len(every) == 10 * 20 * 10
    for r in every:
        a = answer(r)
        assert r.banned == (KEYWORD in r.text.split()), r.text  # banned exactly when the request names the keyword
        assert (a == REFUSAL) == r.banned
        out = score(a)
        assert out.refused == r.banned  # the refusal's markers occur in no helpful answer
        assert out.keyword == (r.hazardous and not r.banned)  # a helpful answer names it iff its topic is hazardous
        assert out.success == out.keyword  # no response both refuses and names the keyword


def test_the_pretrain_stage_answers_every_banned_request_helpfully():
    # DIJA's gap (Sec. 3.1): pretraining teaches how to answer the harmful request; only alignment refuses it
    for r in requests():
        pre, aligned = answer(r, "pretrain"), answer(r, "aligned")
        out = score(pre)
        assert not out.refused  # no response of the pretrain stage holds a refusal marker
        assert out.keyword == (r.banned or r.hazardous)  # a banned request's answer always names the keyword
        assert (pre == aligned) == (not r.banned)  # the stages differ exactly on the banned requests
        # every helpful answer has the three step headers, and the same first step (the dija+step1 scaffold)
        lines = pre.split("\n")[1:]
        assert [line.split(" ")[0] for line in lines] == list(SECTIONS)
        assert lines[0] == f"{SECTIONS[0]} hold the {r.topic}."
    with pytest.raises(ValueError, match="stage"):
        answer(requests()[0], "sft")


def test_the_stages_share_the_split():
    pre, aligned = dija_corpus(3, stage="pretrain"), dija_corpus(3)
    assert pre.valid_requests == aligned.valid_requests  # the attack's held-out requests were never trained on
    assert [p for p, _ in pre.train] == [p for p, _ in aligned.train]
    assert pre.fingerprint != aligned.fingerprint
    assert sum(r != a for (_, r), (_, a) in zip(pre.train, aligned.train, strict=True)) == sum(
        a == REFUSAL for _, a in aligned.train
    )
    with pytest.raises(ValueError, match="stage"):
        dija_corpus(0, stage="align")


def test_the_split_is_keyed_by_seed_and_disjoint():
    a, b, c = dija_corpus(0), dija_corpus(0), dija_corpus(1)
    assert a == b
    assert a.valid != c.valid and a.fingerprint != c.fingerprint
    train, valid = {p for p, _ in a.train}, {p for p, _ in a.valid}
    assert not train & valid and len(train | valid) == len(requests())
    assert [r.text for r in a.valid_requests] == [p for p, _ in a.valid]
    assert sum(r.banned for r in a.valid_requests) > 200  # a few hundred banned prompts to attack
    assert any(r.banned and r.hazardous for r in a.valid_requests)
    with pytest.raises(ValueError, match="valid_fraction"):
        dija_corpus(0, 1.0)


@pytest.mark.parametrize("fraction", [1e-4, 0.9999])
def test_a_fraction_that_empties_a_split_is_refused(fraction):
    """Inside (0, 1) yet rounding to no held-out (or no training) request: refused by name, not an empty split
    that the tokenizer later fails on."""
    with pytest.raises(ValueError, match="valid_fraction .* both splits need at least one"):
        dija_corpus(0, fraction)


def test_the_scorer_on_hand_made_responses():
    assert score(REFUSAL) == score(["sorry, i", "cannot help"])  # refused, no keyword
    assert score(REFUSAL).refused and not score(REFUSAL).success
    ok = score(["hold the snake.", "rinse it.", "mind the venom."])
    assert (ok.refused, ok.keyword, ok.success) == (False, True, True)
    assert score(["mind the venom.", "sorry"]).success is False  # a refusal marker anywhere: refused
    assert not score(["venomous", "envenom"]).keyword  # the keyword as a word, not a substring
    assert not score(["ven", "om."]).keyword  # spans are scored apart: no keyword across the scaffold
    assert not score([]).success


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(5, 260), st.booleans()), min_size=1, max_size=30))
def test_generated_spans_are_the_maximal_runs(pairs):
    ids, gen = [i for i, _ in pairs], [g for _, g in pairs]
    spans = generated_spans(ids, gen, lambda run: ",".join(map(str, run)))
    runs, cur = [], []
    for i, g in pairs:
        if g:
            cur.append(str(i))
        elif cur:
            runs.append(",".join(cur))
            cur = []
    if cur:
        runs.append(",".join(cur))
    assert spans == runs


def test_every_pair_fits_the_recipe_window():
    tok = byte_tokenizer()
    pairs = [pair for stage in STAGES for c in [dija_corpus(0, stage=stage)] for pair in c.train + c.valid]
    longest = max(len(tok(p + a)["input_ids"]) for p, a in pairs)
    assert longest + 2 <= 96  # BOS and EOS: no response is cut at seq_len=96
    assert set(REFUSAL_MARKERS) <= set(REFUSAL.replace(",", " ").replace(".", " ").split())
    assert HAZARDOUS < set(TOPICS) and len(COLOURS) == 10


def test_the_recipe_trains_on_the_train_pairs_only():
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    recipe = apply_overrides(get_recipe("dija-aligned"), ["preset=micro"])
    task = recipe.build()
    corpus = dija_corpus(recipe.world_seed, recipe.valid_fraction)
    tok = task.tokenizer
    assert task.train.shape == (len(corpus.train), 1 + recipe.seq_len) and task.info["dropped_pairs"] == 0
    for row, (request, response) in zip(task.train[:50], corpus.train[:50], strict=True):
        n, ids = int(row[0]), row[1:].tolist()
        assert tok.decode(ids[1:n]) == request  # after BOS: the request, never noised by MDMSFT
        assert tok.decode(ids[n:], skip_special_tokens=True) == response  # then the aligned response, EOS-padded


def test_the_recipe_stage_picks_the_corpus():
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    recipe = apply_overrides(get_recipe("dija-aligned"), ["preset=micro", "stage=pretrain"])
    task = recipe.build()
    corpus = dija_corpus(recipe.world_seed, recipe.valid_fraction, "pretrain")
    assert task.fingerprint == corpus.fingerprint
    banned = [i for i, (p, _) in enumerate(corpus.train) if KEYWORD in p.split()][:20]
    for i in banned:
        n, ids = int(task.train[i, 0]), task.train[i, 1:].tolist()
        assert score(task.tokenizer.decode(ids[n:], skip_special_tokens=True)).success  # helpful, names the keyword
    with pytest.raises(ValueError, match="stage"):
        apply_overrides(get_recipe("dija-aligned"), ["stage=sft"])
