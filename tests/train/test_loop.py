"""The loop: bit-exact resume, schedule shape, keyed data order."""

import json

import pytest
import torch
from safetensors.torch import load_file

from masklab.train.loop import _Order, lr_at, train, trained
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides


def _recipe(data, **kw):
    over = [
        f"data={data}",
        "preset=micro",
        "seq_len=32",
        "batch_size=8",
        "steps=8",
        "warmup=2",
        "eval_every=4",
        "ckpt_every=3",
        "eval_batches=1",
        "log_every=1",
        "max_minutes=0",
    ] + [f"{k}={v}" for k, v in kw.items()]
    return apply_overrides(get_recipe("mdm-tiny"), over)


def test_resume_is_bit_exact(small_corpus, tmp_path):
    r = _recipe(small_corpus, grad_accum=2)
    train(r, tmp_path / "full", progress=False)
    train(r, tmp_path / "cut", progress=False, stop_at=5)  # pre-empted after step 5 (checkpoint at 5)
    assert json.loads((tmp_path / "cut" / "model" / "masklab.json").read_text())["step"] == 5
    train(r, tmp_path / "cut", progress=False, resume=True)
    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loss = lambda p: [r["loss"] for r in map(json.loads, p.read_text().splitlines()) if "loss" in r]  # noqa: E731
    assert loss(tmp_path / "full" / "metrics.jsonl") == loss(tmp_path / "cut" / "metrics.jsonl")


def test_resume_refuses_a_changed_recipe(small_corpus, tmp_path):
    train(_recipe(small_corpus, steps=2), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(_recipe(small_corpus, steps=4, lr=0.1), tmp_path / "r", progress=False, resume=True)


def test_trained_reuses_a_finished_run_of_the_same_recipe_only(small_corpus, tmp_path):
    first = trained(_recipe(small_corpus, steps=2), tmp_path / "r")
    weights = (tmp_path / "r" / "model" / "model.safetensors").stat().st_mtime_ns
    again = trained(_recipe(small_corpus, steps=2, log_every=2, device="cpu"), tmp_path / "r")  # how, not what
    assert again == json.loads(json.dumps(first))  # the run's summary, read back
    assert (tmp_path / "r" / "model" / "model.safetensors").stat().st_mtime_ns == weights  # nothing retrained
    with pytest.raises(ValueError, match="another recipe .*lr, steps"):
        trained(_recipe(small_corpus, steps=3, lr=0.1), tmp_path / "r")


def test_lr_schedule():
    r = get_recipe("mdm-tiny")
    lrs = [lr_at(s, r) for s in range(r.steps)]
    assert lrs[r.warmup - 1] == pytest.approx(r.lr)
    assert lrs[0] < lrs[r.warmup - 1] and lrs[-1] < lrs[r.warmup]
    assert min(lrs[r.warmup :]) >= r.lr * r.min_lr_ratio - 1e-12


def test_data_order_is_a_keyed_permutation_per_epoch():
    order = _Order(10, seed=0)
    idx, epoch = order(torch.arange(30))
    assert epoch.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    for e in range(3):
        assert sorted(idx[epoch == e].tolist()) == list(range(10))
    assert not torch.equal(idx[:10], idx[10:20])
    assert torch.equal(_Order(10, seed=0)(torch.arange(30))[0], idx)
