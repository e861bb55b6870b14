"""End to end through the CLI: train -> eval -> generate -> show, and one-line errors with exit code 2."""

import json
import subprocess
import sys

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

    from masklab.cli import load_masked_lm
    from masklab.sample import generate, parse_prompt

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
