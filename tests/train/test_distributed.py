"""torchrun with 2 CPU processes (gloo) follows the same loss curve as 1 process with the same global batch."""

import json

import pytest


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
def test_two_ranks_match_one(small_corpus, tmp_path, launch):
    common = [
        "train",
        "--recipe",
        "mdm-tiny",
        "--data",
        str(small_corpus),
        "--no-progress",
        "preset=micro",
        "seq_len=32",
        "batch_size=8",
        "steps=6",
        "warmup=2",
        "eval_every=0",
        "ckpt_every=0",
        "log_every=1",
        "max_minutes=0",
        "device=cpu",
    ]
    launch([*common, "--out", str(tmp_path / "one")])
    launch([*common, "--out", str(tmp_path / "two")], ranks=2)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (one, two)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2
