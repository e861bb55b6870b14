"""Collators as ``data_collator`` in a real ``transformers.Trainer`` (issue 3): every strategy and objective
trains a tiny HF model, the loss falls on a tiny overfit set, and an example's mask is keyed on the example, not
on the Trainer's shuffling, its DataLoader workers or which columns it prunes.

Column pruning: with the HF default ``remove_unused_columns=True`` the Trainer drops every dataset column the
model's ``forward`` does not name, so ``idx``, ``word_ids`` and ``special_tokens_mask`` never reach the
collator; it then keys each example on a hash of its token ids and finds words from the vocabulary's marks.
``remove_unused_columns=False`` passes every column (strings included) and the collator uses ``idx`` and
``word_ids``.
"""

import inspect
import math
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import Trainer, TrainingArguments

from masklab.collate import MDMCollator, MEAPCollator, MLMCollator, RTDCollator
from masklab.corrupt.ngram import NgramLexicon
from masklab.data.tokenizers import token_info, train_bpe
from masklab.models import build_model

N, BATCH = 16, 8  # examples in the overfit set; per-device batch
LOSS_DROP = 0.5  # nats the logged loss must fall in 16 steps at lr 1e-2 (measured: about 1.5)


def _lines() -> list[str]:
    """Unique docstring lines of a few stdlib modules: real text, no download."""
    import bisect
    import collections
    import functools as ft
    import heapq
    import json
    import textwrap

    seen, out = set(), []
    for mod in (json, textwrap, collections, heapq, ft, bisect):
        for obj in [mod, *(v for v in vars(mod).values() if callable(v))]:
            for line in (inspect.getdoc(obj) or "").splitlines():
                line = line.strip()
                if len(line.split()) >= 5 and line not in seen:
                    seen.add(line)
                    out.append(line)
    return out


@pytest.fixture(scope="module")
def tok():
    return train_bpe(_lines(), 400)  # byte-level BPE: words from its space marks; a small vocab keeps steps fast


@pytest.fixture(scope="module")
def ds(tok):
    """N tokenized lines as a ``datasets.Dataset`` with the columns a pipeline usually carries."""
    lines = _lines()[:N]
    enc = tok(lines, truncation=True, max_length=30)
    b, e = tok.bos_token_id, tok.eos_token_id
    return datasets.Dataset.from_dict(
        {
            "input_ids": [[b, *ids, e] for ids in enc["input_ids"]],
            "attention_mask": [[1, *m, 1] for m in enc["attention_mask"]],
            "special_tokens_mask": [[1, *[0] * len(ids), 1] for ids in enc["input_ids"]],
            "word_ids": [[None, *enc.word_ids(i), None] for i in range(N)],
            "idx": list(range(N)),
            "text": lines,  # a string column: pruned by default, passed through with remove_unused_columns=False
        }
    )


def _collator(name: str, tok, ds):
    if name in ("random", "whole_word", "span", "ngram"):
        lex = None
        if name == "ngram":
            lex = NgramLexicon.build(ds["input_ids"], len(tok), size=50, min_count=2, special_ids=tok.all_special_ids)
        return MLMCollator(tok, strategy=name, prob=0.3, seed=0, lexicon=lex)
    return {"rtd": RTDCollator, "meap": MEAPCollator, "mdm": MDMCollator}[name](tok, seed=0)


class Recorder(Trainer):
    """A Trainer that keeps every batch the collator gave it (as the model received it)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.batches.append({k: v.detach().cpu() for k, v in inputs.items()})
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _train(
    tmp_path, tok, ds, collator, *, arch="modernbert", steps=16, lr=1e-2, batch=BATCH, callbacks=None, **args
) -> Recorder:
    torch.manual_seed(0)
    model = build_model(arch, "micro", token_info(tok), 64)
    targs = TrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        max_steps=steps,
        per_device_train_batch_size=batch,
        save_strategy="no",
        logging_steps=4,
        seed=0,
        learning_rate=lr,
        disable_tqdm=True,
        **args,
    )
    tr = Recorder(model=model, args=targs, train_dataset=ds, data_collator=collator, callbacks=callbacks)
    tr.batches = []
    tr.train()
    return tr


@pytest.mark.parametrize("name", ["random", "whole_word", "span", "ngram", "rtd", "meap", "mdm"])
def test_trainer_overfits_with_every_collator(tmp_path, tok, ds, name):
    """16 steps on 16 lines: the logged training loss is finite and falls well below its start (ln V = 6.0 for a
    fresh model), with the HF default column pruning; the model receives int64 ids and -100 on padding."""
    arch = "llama" if name == "meap" else "modernbert"  # MEAP trains a causal LM; the rest a masked LM
    tr = _train(tmp_path, tok, ds, _collator(name, tok, ds), arch=arch)
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0] - LOSS_DROP, losses
    assert tr.state.global_step == 16
    for b in tr.batches:
        assert b["input_ids"].dtype == b["labels"].dtype == torch.long
        assert (b["labels"][b["attention_mask"] == 0] == -100).all()
        assert ((b["labels"] != -100) & (b["attention_mask"] == 1)).any()


def _originals(b: dict) -> torch.Tensor:
    """[B, L] the clean ids: the labels where a position is predicted, the input elsewhere."""
    return torch.where(b["labels"] != -100, b["labels"], b["input_ids"])


def _rows_by_example(tr: Trainer, ds, steps_per_epoch: int) -> tuple[dict, list]:
    """(epoch, example index) -> (inputs, labels) of that example's row in the recorded batches, and the order
    in which the examples came."""
    index = {tuple(ids): i for i, ids in enumerate(ds["input_ids"])}
    rows, order = {}, []
    for step, b in enumerate(tr.batches):
        orig = _originals(b)
        for r in range(len(orig)):
            real = b["attention_mask"][r].bool()
            i = index[tuple(orig[r][real].tolist())]
            rows[step // steps_per_epoch, i] = (b["input_ids"][r][real], b["labels"][r][real])
            order.append(i)
    return rows, order


def _alone(c, ds, i: int, fields: list[str]) -> dict:
    return c([{k: ds[i][k] for k in fields}])


@pytest.mark.parametrize("keep", [True], ids=["all_columns"])
def test_mask_is_keyed_on_the_example_not_the_trainers_order(tmp_path, tok, ds, keep):
    """Whole-word masks over two epochs under two data seeds, 0 vs 2 DataLoader workers and batch 4 vs 8: each
    example gets the same row in both runs, and it is the row the collator gives that example alone at that
    epoch. remove_unused_columns=False: the collator sees ``idx``, ``word_ids`` and a string column; the
    default: it sees input_ids and attention_mask only and keys on the token ids. With the collator's
    trainer_callback the two epochs draw different masks."""
    c = _collator("whole_word", tok, ds)
    fields = ["input_ids", "attention_mask"] + (["special_tokens_mask", "word_ids", "idx", "text"] if keep else [])
    other = ["input_ids", "attention_mask", "idx"] if not keep else ["input_ids", "attention_mask"]
    assert any(  # the key the Trainer lets through matters: idx and content hash give other masks
        not torch.equal(_alone(c, ds, i, fields)["labels"], _alone(c, ds, i, other)["labels"]) for i in range(N)
    )
    runs = []
    for data_seed, workers, batch in ((0, 0, 4), (1, 2, 8)):
        tr = _train(
            tmp_path,
            tok,
            ds,
            c,
            steps=2 * N // batch,
            lr=1e-4,
            batch=batch,
            data_seed=data_seed,
            dataloader_num_workers=workers,
            remove_unused_columns=not keep,
            callbacks=[c.trainer_callback()],
        )
        runs.append(_rows_by_example(tr, ds, N // batch))
    (ra, oa), (rb, ob) = runs
    assert len(ra) == len(rb) == 2 * N  # every example once per epoch
    assert oa != ob, "the two runs should visit the examples in different orders"
    for key in ra:
        assert torch.equal(ra[key][0], rb[key][0]) and torch.equal(ra[key][1], rb[key][1]), key
    for epoch in (0, 1):
        c.set_epoch(epoch)
        for i in range(N):
            alone = _alone(c, ds, i, fields)
            assert torch.equal(alone["input_ids"][0], ra[epoch, i][0]), (epoch, i)
            assert torch.equal(alone["labels"][0], ra[epoch, i][1]), (epoch, i)
    assert sum(not torch.equal(ra[0, i][1], ra[1, i][1]) for i in range(N)) >= N // 2


def test_pruned_columns_key_on_content_position_and_step_and_repeat(tmp_path, tok, ds):
    """The default remove_unused_columns=True drops idx: the collator keys on the content, the position in the
    batch and its call count (issue 21.18), so a run is reproducible: two runs with fresh collators give the
    same batches, and with the callback the two epochs draw different masks."""
    runs = []
    for _ in range(2):
        c = _collator("whole_word", tok, ds)
        tr = _train(tmp_path, tok, ds, c, steps=2 * N // 4, lr=1e-4, batch=4, callbacks=[c.trainer_callback()])
        runs.append(tr.batches)
    a, b = runs
    assert len(a) == len(b) == 2 * N // 4
    assert all(
        torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
        for x, y in zip(a, b, strict=True)
    )
    rows, _ = _rows_by_example(SimpleNamespace(batches=a), ds, N // 4)
    assert sum(not torch.equal(rows[0, i][1], rows[1, i][1]) for i in range(N)) >= N // 2


def test_without_the_callback_every_epoch_repeats_its_masks(tmp_path, tok, ds):
    """The Trainer never calls a collator's set_epoch: without trainer_callback() masks are static (BERT's
    dupe_factor=1), which is why the callback exists. (Keyed on idx: without idx the call count changes them.)"""
    c = _collator("random", tok, ds)
    tr = _train(tmp_path, tok, ds, c, steps=2 * N // BATCH, lr=1e-4, remove_unused_columns=False)
    rows, _ = _rows_by_example(tr, ds, N // BATCH)
    assert all(torch.equal(rows[0, i][1], rows[1, i][1]) for i in range(N))
