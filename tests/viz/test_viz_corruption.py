"""masklab show corruption: one PNG per strategy, roles coloured; bad input gives a one-line error."""

import argparse

import pytest

from masklab.viz import corruption


def args(**kw):
    p = argparse.ArgumentParser()
    corruption.add_arguments(p)
    a = p.parse_args(["--out", str(kw.pop("out"))])
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def test_every_strategy_draws(tmp_path):
    out = tmp_path / "all.png"
    corruption.run(args(out=out, strategy="all", text="Whole word masking hides unbelievably long words."))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for s in ("mdiff4str:block",):
        corruption.run(args(out=tmp_path / "one.png", strategy=s, prob=0.4))
        assert (tmp_path / "one.png").stat().st_size > 1000


def test_roles_are_the_corruption_kinds():
    tok = corruption._tokenizer(None)
    enc = tok("the quick brown fox jumps over the lazy dog again and again")
    inputs, kind = corruption._corrupt("random", tok, enc, seed=0, prob=1.0)
    ids = enc["input_ids"]
    assert kind[0] == 0 and kind[-1] == 0  # [CLS], [SEP] kept
    assert all(int(k) in (1, 2, 3) for k in kind[1:-1])
    assert all((int(i) == tok.mask_token_id) == (int(k) == 1) for i, k in zip(inputs[1:-1], kind[1:-1], strict=True))
    assert all(int(i) == o for i, o, k in zip(inputs, ids, kind, strict=True) if int(k) == 3)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="strategy"):
        corruption.run(args(out=tmp_path / "x.png", strategy="bogus"))
    with pytest.raises(ValueError, match="text"):
        corruption.run(args(out=tmp_path / "x.png", text="  "))
    with pytest.raises(ValueError, match="png"):
        corruption.run(args(out=tmp_path / "x.jpg"))
