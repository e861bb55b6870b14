"""The layer-wise token classification example runs end to end (briefly) and applies its layer plan."""

import importlib.util
import math
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "layerwise_token_classification.py"


def _load():
    spec = importlib.util.spec_from_file_location("layerwise_token_classification", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_labels_follow_the_next_token():
    ex = _load()
    ids, labels = ex.encode_source("x = f(y)\ndef g(): return x.z\n")
    # x = f ( y ) NEWLINE def g ( ) : return x . z NEWLINE
    assert labels == [1, 0, 2, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 1, 0]
    assert len(ids) == len(labels) and max(ids) < ex.VOCAB


def test_example_trains_both_configurations(capsys):
    ex = _load()
    results = ex.main(
        [
            "--steps",
            "4",
            "--max-files",
            "2",
            "--seq-len",
            "32",
            "--n-layers",
            "2",
            "--batch",
            "8",
            "--layers",
            "layerwise:bidir=0,causal=1",
        ]
    )
    causal, mixed = results
    assert causal["config"] == "causal" and causal["bidirectional_layers"] == []
    assert mixed["bidirectional_layers"] == [0]
    for r in results:
        assert math.isfinite(r["final_train_loss"]) and 0.0 <= r["accuracy"] <= 1.0
    assert "layerwise:bidir=0,causal=1" in capsys.readouterr().out
