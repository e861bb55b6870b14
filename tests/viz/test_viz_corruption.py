"""masklab show corruption: one PNG per strategy, roles coloured; bad input gives a one-line error."""

import numpy as np
import pytest

from masklab.corrupt.strategies import TOKEN
from masklab.viz import corruption


def test_every_strategy_draws(tmp_path):
    out = tmp_path / "all.png"
    corruption.corruption_figure(out, strategy="all", text="Whole word masking hides unbelievably long words.")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for s in ("mdiff4str:block",):
        path = corruption.corruption_figure(tmp_path / "one.png", strategy=s, prob=0.4)
        assert path == tmp_path / "one.png" and path.stat().st_size > 1000


@pytest.mark.parametrize("name", TOKEN.names())
def test_every_registered_strategy_has_a_row(name):
    tok = corruption._tokenizer(None)
    enc = tok("the quick brown fox jumps over the lazy dog again and again")
    inputs, kind = corruption._corrupt(name, tok, enc, seed=0, prob=0.5)
    assert inputs.shape == kind.shape == (len(enc["input_ids"]),)
    assert name in corruption.strategy_names()


def test_roles_are_the_corruption_kinds():
    tok = corruption._tokenizer(None)
    enc = tok("the quick brown fox jumps over the lazy dog again and again")
    inputs, kind = corruption._corrupt("random", tok, enc, seed=0, prob=1.0)
    ids = enc["input_ids"]
    assert kind[0] == 0 and kind[-1] == 0  # [CLS], [SEP] kept
    assert all(int(k) in (1, 2, 3) for k in kind[1:-1])
    assert all((int(i) == tok.mask_token_id) == (int(k) == 1) for i, k in zip(inputs[1:-1], kind[1:-1], strict=True))
    assert all(int(i) == o for i, o, k in zip(inputs, ids, kind, strict=True) if int(k) == 3)


def test_whole_word_row_shows_a_multi_piece_word():
    """Issue 21.21: with the defaults the whole-word row must show a word of several WordPieces corrupted as one
    (otherwise it looks the same as random masking)."""
    tok = corruption._tokenizer(None)
    enc = tok(corruption.DEFAULT_TEXT, truncation=True, max_length=128)
    _, kind = corruption._corrupt("whole_word", tok, enc, seed=0, prob=0.15)
    wid = enc.word_ids()
    hit = {w for w, k in zip(wid, kind.tolist(), strict=True) if k != 0 and w is not None}
    pieces = {w: sum(1 for x in wid if x == w) for w in hit}
    assert any(n > 1 for n in pieces.values()), pieces
    for w in hit:  # every piece of a chosen word is corrupted
        assert all(k != 0 for x, k in zip(wid, kind.tolist(), strict=True) if x == w)


def test_all_has_no_empty_band_under_the_title(tmp_path):
    """Issue 21.21: `--strategy all` must not leave a large blank band between the title and the first row."""
    import matplotlib.image as mpimg

    img = mpimg.imread(corruption.corruption_figure(tmp_path / "all.png", strategy="all"))
    ink = (img[..., :3] < 0.9).any(axis=(1, 2))  # rows of pixels with something drawn
    rows = np.flatnonzero(ink)
    gaps = np.diff(rows)
    assert gaps.max() < 0.06 * img.shape[0], (gaps.max(), img.shape)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="strategy"):
        corruption.corruption_figure(tmp_path / "x.png", strategy="bogus")
    with pytest.raises(ValueError, match="text"):
        corruption.corruption_figure(tmp_path / "x.png", text="  ")
    with pytest.raises(ValueError, match="png"):
        corruption.corruption_figure(tmp_path / "x.jpg")
