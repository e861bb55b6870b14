"""Every token-corruption recipe trains end to end through the CLI on the micro preset, and reloads."""

import json

import pytest

from masklab.cli import main

FAST = [
    "preset=micro",
    "tokenizer=bytes",
    "seq_len=16",
    "batch_size=4",
    "steps=2",
    "warmup=1",
    "eval_every=0",
    "ckpt_every=0",
    "eval_batches=1",
    "log_every=1",
    "max_minutes=0",
]


@pytest.mark.parametrize(
    "name,extra",
    [
        ("mlm-wwm", []),
        ("mlm-span", ["span_gap=1"]),
        ("mlm-ngram", ["lexicon_min_count=2"]),
        ("electra", []),
        ("meap", []),
    ],
)
def test_recipe_trains_end_to_end(name, extra, small_corpus, tmp_path):
    out = tmp_path / name
    rc = main(
        [
            "train",
            "--recipe",
            name,
            "--data",
            str(small_corpus),
            "--out",
            str(out),
            "--no-progress",
            *FAST,
            *extra,
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and all(v == v for v in summary["eval"].values())  # finite, not NaN
    if name == "electra":  # the checkpoint (discriminator + generator + GDES delta) reloads for eval
        assert main(["eval", "--model", str(out), "--batches", "1"]) == 0
        assert (out / "model" / "generator" / "model.safetensors").exists()
