"""log=tensorboard writes the metrics.jsonl numbers as TensorBoard events, and `masklab show curves` draws runs."""

import json

import pytest

from masklab.cli import main

TINY = ["preset=micro", "seq_len=32", "batch_size=8", "steps=12", "warmup=2", "eval_every=6", "log_every=3",
        "eval_batches=1", "max_minutes=0"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_corpus):
    """Two 12-step micro runs of mdm-tiny: `plain` (metrics.jsonl only) and `board` (log=tensorboard)."""
    root = tmp_path_factory.mktemp("curves")
    for name, extra in (("plain", []), ("board", ["log=tensorboard"])):
        argv = ["train", "--recipe", "mdm-tiny", "--out", str(root / name), "--no-progress", f"data={small_corpus}"]
        argv += [*TINY, *extra]
        assert main(argv) == 0
    return root / "plain", root / "board"


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_the_metrics_jsonl_numbers(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain, board = runs
    assert not (plain / "tensorboard").exists()
    assert list((board / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(board / "tensorboard"))
    events.Reload()
    rows = _records(board)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(s, pytest.approx(v)) for s, v in train]
    evals = [(r["step"], r["eval"]["loss"]) for r in rows if "eval" in r]
    assert [(e.step, e.value) for e in events.Scalars("eval/loss")] == [(s, pytest.approx(v)) for s, v in evals]
    assert {"train/lr", "train/grad_norm", "eval/nll_bound_bits"} <= set(events.Tags()["scalars"])


def test_show_curves_draws_both_runs(runs, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert main(["show", "curves", *map(str, runs), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(out) in capsys.readouterr().out


def test_show_curves_of_a_missing_run_is_one_line(runs, tmp_path, capsys):
    assert main(["show", "curves", str(runs[0]), str(tmp_path / "nope"), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "no metrics.jsonl" in err, err
    assert not (tmp_path / "c.png").exists()


def test_log_must_be_jsonl_or_tensorboard(tmp_path, capsys):
    assert main(["train", "--recipe", "mdm-tiny", "--out", str(tmp_path / "r"), "log=wandb"]) == 2
    assert "log must be 'jsonl' or 'tensorboard'" in capsys.readouterr().err


def test_a_resumed_run_keeps_one_event_per_record(small_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    over = [f"data={small_corpus}", *TINY, "ckpt_every=5", "log_every=1", "log=tensorboard"]
    r = apply_overrides(get_recipe("mdm-tiny"), over)
    train(r, tmp_path, progress=False, stop_at=8)  # checkpoint at 5, records up to 8: those past 5 are redone
    train(r, tmp_path, progress=False, resume=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    train_rows = [(x["step"], x["loss"]) for x in _records(tmp_path) if "loss" in x]
    assert [s for s, _ in train_rows] == list(range(1, 13))
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(s, pytest.approx(v)) for s, v in train_rows]
