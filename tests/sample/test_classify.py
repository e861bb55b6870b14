"""Generative classification: label scores are exact chain-rule log-probabilities under the model."""

import math

import pytest
import torch

from masklab.data.stdlib_tasks import keyword_task
from masklab.data.tokenizers import byte_tokenizer
from masklab.sample.classify import classify, score_labels

TOK = byte_tokenizer()


def _ids(s):
    return TOK(s, add_special_tokens=False)["input_ids"]


class Bigram:
    """p(token at i) depends only on the token at i-1 (fixed random table): exact conditionals are easy to
    write."""

    def __init__(self):
        self.table = torch.randn(len(TOK), len(TOK), generator=torch.Generator().manual_seed(0)) * 3

    def __call__(self, x):
        prev = torch.cat([x[:, :1], x[:, :-1]], 1)
        return self.table[prev]


def test_scores_are_chain_rule_log_probs():
    model = Bigram()
    s = score_labels(model, TOK, ["ab<mask>cd"], ["xy", "q"], normalize="sum")[0]
    lp = model.table.log_softmax(-1)
    want_xy = lp[_ids("b")[0], _ids("x")[0]] + lp[_ids("x")[0], _ids("y")[0]]
    want_q = lp[_ids("b")[0], _ids("q")[0]]
    assert math.isclose(float(s[0]), float(want_xy), rel_tol=1e-5)
    assert math.isclose(float(s[1]), float(want_q), rel_tol=1e-5)
    mean = score_labels(model, TOK, ["ab<mask>cd"], ["xy", "q"], normalize="mean")[0]
    assert math.isclose(float(mean[0]), float(want_xy) / 2, rel_tol=1e-5)


def test_classify_picks_the_label_the_model_prefers():
    def model(x):  # loves "def"
        out = torch.zeros(x.shape + (len(TOK),))
        for t in _ids("def"):
            out[..., t] = 5.0
        return out

    assert classify(model, TOK, ["<mask> f(x):", "x = 1\n<mask> g():"], ["class", "def", "if"]) == [
        "def",
        "def",
    ]


def test_keyword_task_is_built_from_held_out_stdlib_lines():
    texts, gold = keyword_task(40, context=40)
    assert len(texts) == 40 and all(t.count("<mask>") == 1 for t in texts)
    assert len(set(gold)) > 2


def test_bad_input():
    with pytest.raises(ValueError, match="exactly one <mask> slot"):
        score_labels(Bigram(), TOK, ["no slot"], ["a"])
    with pytest.raises(ValueError, match="normalize"):
        score_labels(Bigram(), TOK, ["<mask>"], ["a"], normalize="max")
