"""Probe data and the image path of the harness (two worker processes give the records one process gives, up to
the summation order of their thread counts)."""

import json

import pytest
import torch

from masklab.compare import Comparison, compare, parse_budget, parse_run
from masklab.compare.probes import PROBE
from masklab.data.stdlib import split_of, stdlib_files
from masklab.data.stdlib_tasks import KEYWORDS, keyword_lines


def test_keyword_probe_is_balanced_and_tested_on_files_no_run_trains_on():
    data = keyword_lines()
    for name, (lines, labels) in data.items():
        assert len(lines) == len(labels) == {"train": 60, "test": 25}[name] * len(KEYWORDS)
        assert sorted(set(labels.tolist())) == list(range(len(KEYWORDS)))
    valid = set()
    for rel, path in stdlib_files():
        if split_of(rel) == "valid":
            valid.update(
                line.strip().partition(" ")[2].strip() for line in path.read_text(errors="replace").splitlines()
            )
    assert all(line in valid for line in data["test"][0])
    assert keyword_lines() is data  # built once per process


def test_every_probe_names_its_metrics_direction():
    for entry in PROBE.entries():
        assert entry.fn.modality in ("text", "image", "frames") and entry.fn.metrics


@pytest.mark.slow
def test_image_runs_on_two_workers_equal_one(tmp_path):
    shared = ("batch_size=16", "depth=1")
    runs = (parse_run("mae-digits"), parse_run("mae-digits:strategy=block"))
    c = Comparison(runs, parse_budget("tokens=2048"), 1, ("digits-linear", "digits-knn"), shared)
    one = compare(c, tmp_path / "one", points=1, progress=False)
    two = compare(c, tmp_path / "two", points=1, workers=2, progress=False)
    assert [(r["run"], r["steps"]) for r in one] == [(r["run"], r["steps"]) for r in two]
    for a, b in zip(one, two, strict=True):  # a worker has 1 thread here, the test 2: sums differ in the last bits,
        for k in a["metrics"]:  # which may flip a k-NN tie (one test image is 0.22 points)
            assert abs(a["metrics"][k] - b["metrics"][k]) <= 0.5, (k, a["metrics"], b["metrics"])
    assert all(r["steps"] == 2 and 10 < r["metrics"]["digits_knn_acc"] <= 100 for r in one)  # 2 x 16 x 64 patches
    assert json.loads((tmp_path / "one" / "compare.json").read_text())["comparison"]["probes"] == list(c.probes)


def test_digit_canvases_label_each_ink_patch_with_its_quadrants_digit():
    from masklab.compare.probes.image import INK, digit_canvases

    x, y = digit_canvases("test", 6, image_size=16, patch=2)
    assert x.shape == (6, 1, 16, 16) and y.shape == (6, 64)
    grid = y.view(6, 8, 8)
    ink = torch.nn.functional.max_pool2d((x > INK).float(), 2)[:, 0] > 0
    assert torch.equal(grid > 0, ink)  # a patch is labelled iff it holds ink
    for q in (grid[:, :4, :4], grid[:, :4, 4:], grid[:, 4:, :4], grid[:, 4:, 4:]):
        for canvas in q:  # one digit per quadrant: every ink patch has the same class
            assert len(canvas[canvas > 0].unique()) <= 1


def test_kv_documents_answer_every_query_and_fill_one_window():
    from masklab.data.kv_retrieval import DOC_CHARS, PAIRS, QUERIES, kv_examples

    docs, needle = kv_examples(2 * PAIRS, seed=0)
    assert sorted(set(needle.tolist())) == list(range(PAIRS))
    for doc, i in zip(docs, needle, strict=True):
        assert len(doc) == DOC_CHARS
        pairs, *queries = doc.lstrip(".").split(" ?")
        table = dict(p.split(":") for p in pairs.split(" "))
        assert len(table) == PAIRS and len(queries) == QUERIES
        assert all(table[k] == v for k, v in (q.strip().split(":") for q in queries))
        assert queries[-1].split(":")[0] == list(table)[i]  # the last query asks for the needle


class _Oracle(torch.nn.Module):
    """A 'causal LM' over bytes that predicts each next byte exactly, or the first pair's value when ``naive``."""

    def __init__(self, tok, naive: bool):
        super().__init__()
        self.tok, self.naive, self.w = tok, naive, torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask):
        nxt = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1)
        if self.naive:
            first = [self.tok.decode(r).lstrip(".").split(" ")[0].split(":")[1] for r in input_ids.tolist()]
            # the last query's value is predicted as the first pair's value
            nxt[:, -3:-1] = torch.tensor([self.tok(v, add_special_tokens=False)["input_ids"] for v in first])
        return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, len(self.tok)).float()})


@pytest.mark.parametrize("naive", [False, True])
def test_retrieval_probe_scores_exact_matches_by_needle_position(monkeypatch, naive):
    from masklab.compare.probes import text
    from masklab.data.tokenizers import byte_tokenizer

    tok = byte_tokenizer()
    monkeypatch.setattr(text, "_load", lambda folder: (_Oracle(tok, naive), tok))
    m = text.retrieval(None, None)
    if not naive:
        assert m == {
            k: 100.0 for k in ("retrieval_acc", "retrieval_acc_early", "retrieval_acc_mid", "retrieval_acc_late")
        }
    else:  # right when the first pair is the needle (1 of 10 positions, all in the first third), or by chance
        assert m["retrieval_acc"] >= 100 / 10 and m["retrieval_acc_late"] < 5


def test_hmm_frames_follow_their_chain():
    from masklab.data.hmm_frames import GaussianHMM

    hmm = GaussianHMM()
    x, s = hmm.sample(200, 64, seed=0)
    again, _ = hmm.sample(200, 64, seed=0)
    assert torch.equal(x, again) and x.shape == (200, 64, 16)
    stay = (s[:, 1:] == s[:, :-1]).float().mean().item()
    expected = hmm.stay + (1 - hmm.stay) / hmm.states  # a jump may land on the same state
    assert abs(stay - expected) < 4 * (expected * (1 - expected) / s[:, 1:].numel()) ** 0.5
    resid = x - torch.from_numpy(hmm.means[s.numpy()]).float()
    assert abs(resid.std().item() - hmm.noise) < 0.02 * hmm.noise
