"""generate, eval, classify, sparsify and show generation take any model folder: a masklab run (verified against
its manifest) or a plain Hugging Face folder that has what the command needs; otherwise one line, exit 2."""

import json

import pytest

from masklab.cli import main

PROMPT = "def f(x):\n    return <mask:3>\n"


@pytest.fixture(scope="module")
def adapted_run(pretrained, corpus, tmp_path_factory):
    """GPT-2 turned into a masked-diffusion LM by a few steps of MDM (adapt=causal)."""
    out = tmp_path_factory.mktemp("adapted") / "run"
    argv = ["train", "--recipe", "mdm-tiny", "--out", str(out), f"init={pretrained('gpt2')}", "adapt=causal",
            f"data={corpus}", "steps=4", "eval_every=0", "ckpt_every=0", "eval_batches=1", "max_minutes=0",
            "batch_size=4", "seq_len=32", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out


def _ok(argv, capsys) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _fails(argv, capsys, message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


@pytest.mark.parametrize("kind", ["bert", "modernbert", "adapted"])
def test_generate_fills_masks_from_any_masked_lm_folder(pretrained, adapted_run, kind, capsys, tmp_path):
    folder = adapted_run if kind == "adapted" else pretrained(kind)
    out = _ok(["generate", "--model", str(folder), "--prompt", PROMPT, "--seed", "0"], capsys)
    assert "return" in out and not any(m in out for m in ("<mask", "[MASK]", "<|mask|>"))  # every mask filled
    png = tmp_path / "g.png"
    _ok(["show", "generation", "--model", str(folder), "--prompt", PROMPT, "--out", str(png)], capsys)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_says_what_a_folder_lacks(pretrained, capsys):
    _fails(["generate", "--model", str(pretrained("minilm")), "--prompt", PROMPT], capsys, "has no MLM head")
    _fails(["generate", "--model", str(pretrained("gpt2")), "--prompt", PROMPT], capsys, "is a causal LM (gpt2)")


@pytest.mark.parametrize("kind, metric", [("bert", "masked_acc"), ("llama", "bits"), ("adapted", "nll_bound_bits")])
def test_eval_on_any_folder(pretrained, adapted_run, corpus, capsys, kind, metric):
    folder = adapted_run if kind == "adapted" else pretrained(kind)
    extra = [] if kind == "adapted" else ["--data", str(corpus)]
    out = _ok(["eval", "--model", str(folder), "--batches", "1", *extra], capsys)
    result = json.loads(out[out.index("{") :])
    assert metric in result and result["loss"] > 0


def test_eval_of_a_plain_folder_needs_data(pretrained, capsys):
    _fails(["eval", "--model", str(pretrained("bert"))], capsys, "plain Hugging Face folder with no recipe or data")


def test_classify_from_a_plain_folder(pretrained, capsys):
    out = _ok(["classify", "--model", str(pretrained("bert")), "--text", "x = <mask>", "--labels", "a,b"], capsys)
    assert sorted(line.split()[-1] for line in out.splitlines()) == ["a", "b"]


@pytest.mark.parametrize("kind", ["bert", "modernbert", "llama", "gpt2", "minilm", "adapted"])
def test_sparsify_any_folder(pretrained, adapted_run, tmp_path, capsys, kind):
    from masklab.train import checkpoint

    folder = adapted_run if kind == "adapted" else pretrained(kind)
    out = tmp_path / "pruned"
    _ok(["sparsify", "--model", str(folder), "--out", str(out)], capsys)
    assert checkpoint.load(out).model is not None
