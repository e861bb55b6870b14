"""Training curves of one or more run folders, read from each ``RUN/metrics.jsonl``: train loss by step in the
first panel, every held-out metric by step in the second (one line per run and metric, the final evaluation
marked)."""

from __future__ import annotations

import json
from pathlib import Path

from masklab.viz._png import plt, save
from masklab.viz._registry import PICTURE

__all__ = ["curves_figure", "read_metrics"]


def read_metrics(run: str | Path) -> list[dict]:
    """The records of ``run``'s metrics.jsonl (a run folder, or the file itself); a missing or empty file is a
    one-line error."""
    path = Path(run)
    path = path if path.suffix == ".jsonl" else path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no metrics.jsonl (is it a run folder of masklab train?)")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}: line {n} is not JSON") from None
    if not records:
        raise ValueError(f"{path} holds no records yet")
    return records


def _label(run: str | Path) -> str:
    path = Path(run).resolve()
    return (path.parent if path.suffix == ".jsonl" else path).name


@PICTURE.register("curves", "train loss and held-out metrics by step of one or more runs (RUN/metrics.jsonl)")
def curves_figure(out, runs: list[str | Path], title: str = "") -> Path:
    """Draw train loss vs step (one line per run, labelled by its folder name) and, beside it, every eval metric
    the runs logged vs step, with the final evaluation marked by a star."""
    if not runs:
        raise ValueError("curves: name at least one run folder")
    logs = [(_label(run), read_metrics(run)) for run in runs]
    fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    metrics = sorted({k for _, rows in logs for r in rows if "eval" in r for k in r["eval"]})
    for i, (label, rows) in enumerate(logs):
        color = colors[i % len(colors)]
        train = [r for r in rows if "loss" in r]
        train_ax.plot([r["step"] for r in train], [r["loss"] for r in train], color=color, label=label)
        evals = [r for r in rows if "eval" in r]
        for j, name in enumerate(metrics):
            points = [(r["step"], r["eval"][name], r.get("final", False)) for r in evals if name in r["eval"]]
            if not points:
                continue
            style = styles[j % len(styles)]
            eval_ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", ms=3, color=color,
                         label=f"{label}: {name}")  # fmt: skip
            final = [p for p in points if p[2]]
            eval_ax.plot([p[0] for p in final], [p[1] for p in final], "*", ms=11, color=color)
    train_ax.set(title="train loss", xlabel="step", ylabel="loss")
    eval_ax.set(title="held-out (star: final evaluation)", xlabel="step")
    train_ax.legend(fontsize=8)
    for ax in (train_ax, eval_ax):
        ax.grid(alpha=0.3)
    if metrics:  # one entry per run and metric: beside the panel, not over the lines
        eval_ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        eval_ax.text(0.5, 0.5, "no evaluations logged", ha="center", va="center", transform=eval_ax.transAxes)
    if title:
        fig.suptitle(title)
    return save(fig, out)
