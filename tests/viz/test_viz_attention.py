"""`masklab show attention`: one panel per layer, each the dense mask; bad specs exit 2 with one line."""

import matplotlib.image as mpimg
import torch

from masklab.attention import mods as M
from masklab.attention.compile import to_dense
from masklab.cli import main
from masklab.viz.attention import _panels


def test_layerwise_spec_gives_one_panel_per_layer():
    panels = _panels("layerwise:bidir=0-1,causal=2-3", 10)
    assert [t for t, _ in panels] == ["layer 0: full", "layer 1: full", "layer 2: causal", "layer 3: causal"]
    assert torch.equal(panels[2][1], to_dense(M.causal(), 10, 10))
    assert bool(panels[0][1].all())


def test_document_spec_uses_its_own_length():
    [(title, dense)] = _panels("document:3,5,8", None)
    assert title == "document_3_5_8" and dense.shape[-1] == 16


def test_cli_writes_png(tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["show", "attention", "causal&sliding_window:4", "--len", "12", "--out", str(out)]) in (
        0,
        None,
    )
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 50


def test_cli_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    code = main(["show", "attention", "sliding_window:-4", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "masklab: error: window must be >= 1, got -4"
