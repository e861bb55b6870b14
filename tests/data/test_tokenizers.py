"""Tokenizers: bytes round-trip, BPE specials and caching, loading from a path."""

import numpy as np
import pytest

from masklab.data.tokenizers import SPECIALS, build_tokenizer, byte_tokenizer, encode_stream, token_info


def test_bytes_round_trip_and_ids():
    tok = byte_tokenizer()
    text = "def f(x):\n\treturn 'é' + x  # ünïcode ✓\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(tok) == 261 and len(ids) == len(text.encode())
    assert tok.decode(ids) == text
    info = token_info(tok)
    assert (info.pad_id, info.mask_id, info.bos_id, info.eos_id) == (0, 1, 2, 3)
    assert info.special_ids == (0, 1, 2, 3, 4) and info.never_mask == (0, 1, 2, 4)  # EOS may be noised


def test_bpe_trains_caches_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKLAB_CACHE", str(tmp_path))
    texts = ["def function_name(argument):\n    return argument\n"] * 50
    tok = build_tokenizer("bpe:300", texts, fingerprint="fp1")
    assert 261 < len(tok) <= 300  # a tiny corpus may run out of merges first
    assert [tok.convert_tokens_to_ids(t) for t in SPECIALS.values()] == [0, 1, 2, 3, 4]
    assert (tmp_path / "tokenizers" / "fp1-bpe300" / "tokenizer.json").exists()
    again = build_tokenizer("bpe:300", None, fingerprint="fp1")  # from the cache: needs no text
    assert again("return argument")["input_ids"] == tok("return argument")["input_ids"]
    assert tok.decode(tok(texts[0], add_special_tokens=False)["input_ids"]) == texts[0]
    tok.save_pretrained(tmp_path / "saved")
    assert len(build_tokenizer(str(tmp_path / "saved"))) == len(tok)


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="bytes"):
        build_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="exceed"):
        build_tokenizer("bpe:100", ["x"], None)


def test_tokenizer_without_mask_token_is_refused(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tok = byte_tokenizer()
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<eos>")
    plain.save_pretrained(tmp_path / "nomask")
    with pytest.raises(ValueError, match="no mask token"):
        build_tokenizer(str(tmp_path / "nomask"))


def test_encode_stream_appends_eos_and_caches(tmp_path):
    tok = byte_tokenizer()
    s = encode_stream(tok, ["ab", "c"], cache=tmp_path / "s.npy")
    assert s.tolist() == tok("ab", add_special_tokens=False)["input_ids"] + [3] + tok("c")["input_ids"] + [3]
    assert np.array_equal(np.load(tmp_path / "s.npy"), s)


def test_token_info_is_the_one_record_collators_use():
    """Issue 14.2: one pad rule (pad, else EOS) and one word-start table, shared by collators and objectives;
    the collator used to pad with 0 when the tokenizer has no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from masklab.collate import MDMCollator, MLMCollator
    from masklab.data.tokenizers import TokenInfo, word_start_table

    tok = byte_tokenizer()
    info = TokenInfo.from_tokenizer(tok)
    assert info == token_info(tok) and info.word_starts is not None
    assert info.word_starts.equal(word_start_table(tok))
    vocab = {"<mask>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate("\u0120abcdef")}}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    nopad = PreTrainedTokenizerFast(tokenizer_object=raw, mask_token="<mask>", eos_token="<eos>")
    assert nopad.pad_token_id is None
    info = token_info(nopad)
    assert info.pad_id == info.eos_id == 1
    for c in (MLMCollator(nopad), MDMCollator(nopad)):
        assert c.info == info and c.pad_id == 1
        out = c([[2, 3, 4, 5], [2, 3]])
        assert out["input_ids"][1, 2:].tolist() == [1, 1]  # padded with EOS
