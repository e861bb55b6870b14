"""``masklab compare`` end to end on a tiny budget: outputs, equal compute, resume, and one-line errors that lose
nothing."""

import json

import pytest

from masklab.cli import main


def _args(corpus, out, *extra, budget="tokens=2048"):
    shared = ["preset=micro", f"data={corpus}", "seq_len=64", "batch_size=8", "tokenizer=bytes"]
    return ["compare", "mlm", "electra", "--budget", budget, "--seeds", "2", "--probe", "keyword", "--points", "2",
            "--no-progress", "--out", str(out), *(x for s in shared for x in ("--set", s)), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def done(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "c"
    assert main(_args(small_corpus, out)) == 0
    return out


@pytest.mark.slow
def test_writes_the_three_outputs_at_equal_tokens(done):
    records = [json.loads(x) for x in (done / "results.jsonl").read_text().splitlines()]
    assert sorted((r["run"], r["seed"]) for r in records) == [("electra", 0), ("electra", 1), ("mlm", 0), ("mlm", 1)]
    assert {r["tokens"] for r in records} == {2048}  # 4 steps of 8 x 64 tokens for both methods
    assert all(0 <= r["metrics"]["keyword_acc"] <= 100 and r["recipe"]["seed"] == r["seed"] for r in records)
    table = (done / "table.md").read_text()
    assert "| `mlm` | 2 | 4 | 2,048 |" in table and ("electra > mlm" in table or "electra ≈ mlm" in table
                                                      or "mlm > electra" in table)  # fmt: skip
    assert (done / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = [json.loads(x) for x in (done / "runs/mlm/seed0/points.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [2, 4]


@pytest.mark.slow
def test_a_killed_compare_resumes_and_redoes_no_finished_run(done, small_corpus, capsys):
    finished = {p: p.stat().st_mtime_ns for p in done.glob("runs/*/seed*/result.json")}
    victim = done / "runs/electra/seed1"
    before = json.loads((victim / "result.json").read_text())
    (victim / "result.json").unlink()  # killed while probing its last point
    lines = (victim / "points.jsonl").read_text().splitlines()
    (victim / "points.jsonl").write_text(lines[0] + "\n")
    assert main(_args(small_corpus, done)) == 0
    after = json.loads((victim / "result.json").read_text())
    assert after["metrics"] == before["metrics"] and after["steps"] == before["steps"]
    for p, t in finished.items():
        if p.parent != victim:
            assert p.stat().st_mtime_ns == t  # not redone


def _fails(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, match",
    [
        (["compare", "nosuch", "--budget", "tokens=9", "--probe", "keyword"], "unknown recipe"),
        (["compare", "mlm:colour=red", "--budget", "tokens=9", "--probe", "keyword"], "unknown key 'colour'"),
        (["compare", "mlm", "--budget", "tokens=9999", "--probe", "nll"], "needs a generative run"),
        (["compare", "mlm", "--budget", "tokens=9999", "--probe", "digits-linear"], "reads image runs"),
        (["compare", "mlm", "--budget", "tokens=10", "--probe", "keyword", "--set", "preset=micro"], "than one step"),
        (["compare", "mlm", "--budget", "steps=10", "--probe", "keyword"], "budget"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(change, match, done, capsys, tmp_path):
    _fails([*change, "--out", str(tmp_path / "x")], capsys, match)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_different_comparison_in_the_same_folder_is_refused(done, small_corpus, capsys):
    results = (done / "results.jsonl").read_text()
    _fails(_args(small_corpus, done, budget="tokens=4096"), capsys, "holds a different comparison")
    assert (done / "results.jsonl").read_text() == results


def test_a_malformed_spec_is_one_line(tmp_path, capsys):
    spec = tmp_path / "c.toml"
    spec.write_text("budget = [")
    _fails(["compare", "--spec", str(spec), "--out", str(tmp_path / "o")], capsys, "not valid TOML")
