"""Every registered picture draws a PNG from small inputs, and `masklab show` offers each under its name."""

import json
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from masklab.cli.show import KINDS
from masklab.sparsity import sparsify_
from masklab.viz import PICTURE


def _sparsity_inputs():
    torch.manual_seed(0)  # weight init of the toy model only
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8))
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    return {"dense": dense, "report": sparsify_(model, "magnitude", 2, 4, filter=lambda n, m: isinstance(m, nn.Linear))}


def _curves_inputs():
    """A fake run folder: three train records, an evaluation and the final one."""
    run = Path(tempfile.mkdtemp()) / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 6.0 - s / 10} for s in (10, 20, 30)]
    rows += [{"step": 20, "eval": {"loss": 5.0}}, {"step": 30, "eval": {"loss": 4.5}, "final": True}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"runs": [run]}


# the smallest inputs of each picture besides `out`; a new picture fails the test below until it has a row here
EXAMPLES = {
    "corruption": lambda: {"strategy": "whole_word", "text": "unbelievably long words"},
    "generation": lambda: {"pieces": ["def", " f", "(", "x", "):"], "order": [-1, 0, 2, 1, -1]},
    "attention": lambda: {"spec": "causal&sliding_window:3", "length": 8},
    "sparsity": _sparsity_inputs,
    "patches": lambda: {"strategy": "block", "grid": 6, "panels": 2},
    "seg": lambda: {},
    "curves": _curves_inputs,
    "moe": lambda: {"load": torch.tensor([[5.0, 3.0, 0.0], [2.0, 2.0, 4.0]]), "dropped": torch.tensor([0.1, 0.0])},
}


@pytest.mark.parametrize("name", PICTURE.names())
def test_every_picture_writes_a_png(name, tmp_path):
    assert name in EXAMPLES, f"picture {name!r} has no example inputs in EXAMPLES"
    path = PICTURE.get(name)(tmp_path / f"{name}.png", **EXAMPLES[name]())
    assert path == tmp_path / f"{name}.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_offers_exactly_the_registered_pictures():
    assert list(KINDS) == PICTURE.names()
    assert all(e.summary and "\n" not in e.summary for e in PICTURE.entries())
