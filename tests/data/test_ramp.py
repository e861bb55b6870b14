"""RAMP data: span masking is exact (whole identifiers, numbers and names, as many as asked), the BM25 tool finds a
planted passage, reader rows hold the passage and the masked text, and held-out examples come from valid files."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data import ramp as R
from masklab.data.stdlib import split_of
from masklab.data.tokenizers import build_tokenizer

# Planted tokens of each kind, and plain words that must never be masked.
IDENTIFIERS = ["os.path", "getLogger", "max_len", "_private", "sys.argv"]
NUMBERS = ["42", "3.5", "0", "1024"]
NAMES = ["Decimal", "socket", "HTTP"]
PLAIN = ["the", "value", "returns", "a", "of", "None", "if"]  # None and if are keywords: never masked
SEPARATORS = [" ", ", ", " (", ") ", ". ", "; "]


@st.composite
def planted_text(draw):
    """(text, the planted maskable tokens as (start, end, kind)): words joined by separators."""
    words = draw(st.lists(st.sampled_from(IDENTIFIERS + NUMBERS + NAMES + PLAIN), min_size=1, max_size=12))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)))
    text, planted = "", []
    for w, sep in zip(words, seps, strict=True):
        kind = "identifier" if w in IDENTIFIERS else "number" if w in NUMBERS else "name" if w in NAMES else None
        if kind:
            planted.append((len(text), len(text) + len(w), kind))
        text += w + sep
    return text, planted


@settings(max_examples=50, deadline=None)
@given(planted_text())
def test_candidates_are_exactly_the_planted_tokens(case):
    text, planted = case
    assert R.candidate_spans(text, frozenset({"Decimal", "socket"})) == planted


@settings(max_examples=50, deadline=None)
@given(planted_text(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_masking_replaces_k_whole_spans(case, k, seed):
    text, planted = case
    if len(planted) < k:
        with pytest.raises(ValueError, match="k must be"):
            R.mask_spans(text, planted, k, np.random.default_rng(seed))
        return
    masked, answers, kinds = R.mask_spans(text, planted, k, np.random.default_rng(seed))
    assert masked.count(R.MASK) == k == len(answers) == len(kinds)
    # Filling the markers with the answers, in order, gives the text back.
    filled = masked
    for a in answers:
        filled = filled.replace(R.MASK, a, 1)
    assert filled == text
    # Each answer is one planted token, whole: no word character touches a marker.
    assert set(zip(answers, kinds, strict=True)) <= {(text[a:b], kd) for a, b, kd in planted}
    assert not re.search(r"\w\[mask\]|\[mask\]\w", masked, re.A)


def test_calls_and_long_words():
    spans = R.candidate_spans("Call open() then close(fd); averyveryverylongname_x is too long.")
    assert [s[2] for s in spans] == ["identifier", "identifier"]  # open and close: followed by "("


def test_bm25_tool_finds_the_planted_passage():
    rng = np.random.default_rng(0)
    vocab = [f"tok{i}" for i in range(200)]
    passages = [" ".join(rng.choice(vocab, 30)) for _ in range(300)]
    planted = "def frobnicate(widget, gizmo): return widget.spin(gizmo) + quux_factor"
    passages[137] = planted
    files = [f"f{i % 50}.py" for i in range(300)]
    tool = R.BM25Tool(passages, files)
    query = "Frobnicate the widget with a gizmo and the quux_factor"
    assert tool.search([query], k=3)[0][0] == 137
    # Leaving out the planted passage's file drops it (and every passage of that file).
    other = tool.search([query], k=3, exclude=[files[137]])[0]
    assert 137 not in other and all(files[i] != files[137] for i in other)
    with pytest.raises(ValueError, match="k must be"):
        tool.search([query], k=0)


def test_reader_rows_hold_passage_and_masked_text():
    tok = build_tokenizer("bytes")
    ex = R.RampExample("Use os.path to join 42 parts.", "Use [mask] to join [mask] parts.", ("os.path", "42"),
                       ("identifier", "number"), "x.py")  # fmt: skip
    passage = "import os; p = os.path.join(a, b)"
    with_p, without = R.encode_reader(tok, [ex, ex], [passage, ""], 96, slot=12)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    masks = [tok.mask_token_id] * 12
    doc = enc("Use ") + masks + enc(" to join ") + masks + enc(" parts.")
    assert with_p[0, : 2 + len(enc(passage)) + len(doc)].tolist() == [tok.bos_token_id, *enc(passage),
                                                                        tok.eos_token_id, *doc]  # fmt: skip
    assert without[0, : 2 + len(doc)].tolist() == [tok.bos_token_id, tok.eos_token_id, *doc]
    for row in (with_p, without):
        assert row.shape == (2, 96)
        labels = row[1][row[1] != -100].view(2, 12).tolist()  # two slots, in order
        for answer, slot in zip(ex.answers, labels, strict=True):
            assert slot == enc(answer) + [tok.eos_token_id] * (12 - len(answer))
        assert (row[0][row[1] != -100] == tok.mask_token_id).all()  # labels sit on the mask tokens only
    with pytest.raises(ValueError, match="too short"):
        R.encode_reader(tok, [ex], [passage], 40, slot=12)


def test_held_out_examples_come_from_valid_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "lib"
    root.mkdir()
    names = [f"mod{i}.py" for i in range(400)]
    valid = [n for n in names if split_of(n) == "valid"][:3]
    train = [n for n in names if split_of(n) == "train"][:3]
    for n in valid + train:
        doc = "Return x_{j} plus {j} from os.path and sys.argv via getLogger, getLogger."
        funcs = "".join(f'def f{j}(x):\n    """{doc.format(j=j)}"""\n    return x\n\n' for j in range(6))
        (root / n).write_text(f'"""Module {n} uses max_len and 7 items."""\n\n{funcs}')
    examples = R.ramp_examples("valid", per_k=4, max_spans=3, root=str(root))
    assert [len(e.answers) for e in examples] == [1] * 4 + [2] * 4 + [3] * 4
    assert {e.file for e in examples} <= set(valid)
    assert not any("getLogger" in e.answers for e in examples)  # repeated in its docstring: never masked
    assert {e.file for e in R.ramp_examples("train", per_k=4, max_spans=3, root=str(root))} <= set(train)
    # The retrieval corpus holds code of both splits and never a docstring.
    passages, files = R.code_chunks(str(root))
    assert set(files) == set(valid + train) and not any("Return" in p or "Module" in p for p in passages)
    # fits= drops candidates: here no number is ever masked.
    short = R.ramp_examples("valid", per_k=2, max_spans=3, root=str(root), fits=lambda s: not s.isdigit())
    assert all(not a.isdigit() for e in short for a in e.answers)
    with pytest.raises(ValueError, match="need 99"):
        R.ramp_examples("valid", per_k=99, root=str(root))
