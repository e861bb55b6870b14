"""What a comparison says: ``table.md`` (mean +- 95% CI over seeds, best in bold, a paired t-test of each run against
the first), one verdict line per (run, metric), and ``curves.png`` (each metric against compute, CI bands).

The CI is Student's t over seeds (``t_{0.975, n-1} * sd / sqrt(n)``). Runs share seeds, so run b is compared with
the first run a on the per-seed differences b - a (paired). A verdict names a winner only when the 95% CI of the
mean difference excludes 0; otherwise it says the difference is not resolved, with its size and sample size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from masklab.compare.probes import PROBE

__all__ = ["mean_ci", "mean_ci_text", "paired", "verdicts", "write_table", "write_curves", "report"]

_X = {"flops": ("flops", "training FLOPs", 1.0), "tokens": ("tokens", "training tokens (M)", 1e-6),
      "minutes": ("train_seconds", "training minutes", 1 / 60)}  # fmt: skip


def flop_unit(flops: float) -> tuple[str, float]:
    """(unit, scale) that writes ``flops`` with a few digits before the point: GFLOPs to EFLOPs."""
    for name, scale in (("EFLOPs", 1e18), ("PFLOPs", 1e15), ("TFLOPs", 1e12)):
        if flops >= scale:
            return name, scale
    return "GFLOPs", 1e9


def mean_ci(values) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval); the half-width is nan for a single value."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def mean_ci_text(values, digits: int = 3, scale: float = 1.0) -> str:
    """``"mean ± half-width"`` of the 95% t interval, both times ``scale``, to ``digits`` decimals (the mean alone
    for one value): the one way benchmarks print a mean over seeds."""
    mean, half = mean_ci(values)
    m = f"{mean * scale:.{digits}f}"
    return m if math.isnan(half) else f"{m} ± {half * scale:.{digits}f}"


def paired(a, b) -> tuple[float, float, float]:
    """(mean of b - a, its 95% CI half-width, two-sided paired t-test p) over matched seeds."""
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    mean, ci = mean_ci(d)
    if len(d) < 2 or np.allclose(d, d[0]):
        return mean, ci, math.nan
    return mean, ci, float(stats.ttest_rel(b, a).pvalue)


def _directions(probes) -> dict[str, bool]:
    out = {}
    for p in probes:
        out.update(PROBE.get(p).metrics)
    return out


def _by_run(records: list[dict]) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for r in records:
        runs.setdefault(r["run"], {})[r["seed"]] = r
    return runs


def _fmt(mean: float, ci: float) -> str:
    return f"{mean:.2f}" if math.isnan(ci) else f"{mean:.2f} ± {ci:.2f}"


def verdicts(records: list[dict], probes) -> list[str]:
    """One line per (run after the first, metric)."""
    runs, lines = _by_run(records), []
    if len(runs) < 2:
        return lines
    first, *rest = runs
    for metric, higher in _directions(probes).items():
        for name in rest:
            seeds = sorted(set(runs[first]) & set(runs[name]))
            if not seeds:
                continue
            a = [runs[first][s]["metrics"][metric] for s in seeds]
            b = [runs[name][s]["metrics"][metric] for s in seeds]
            d, ci, p = paired(a, b)
            n = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
            sense = "higher" if higher else "lower"
            if not math.isnan(ci) and abs(d) > ci:
                better = (d > 0) == higher
                win, lose = (name, first) if better else (first, name)
                lines.append(
                    f"{win} > {lose} on {metric} by {abs(d):.2f} ± {ci:.2f} ({n}, p={p:.3g}; {sense} is better)"
                )
            else:
                why = "one seed: no CI" if math.isnan(ci) else "the 95% CI includes 0"
                lines.append(f"{name} ≈ {first} on {metric}: {d:+.2f}{'' if math.isnan(ci) else f' ± {ci:.2f}'} ({n}; "
                             f"{why}; {sense} is better)")  # fmt: skip
    return lines


def write_table(records: list[dict], probes, path: Path, budget: str) -> str:
    runs, dirs = _by_run(records), _directions(probes)
    stats = {name: {m: mean_ci([r["metrics"][m] for r in by.values()]) for m in dirs} for name, by in runs.items()}
    best = {}
    for m, higher in dirs.items():
        means = {n: s[m][0] for n, s in stats.items()}
        best[m] = (max if higher else min)(means, key=means.get) if means else None
    unit, scale = flop_unit(max((r["flops"] for r in records), default=0.0))
    head = ["run", "seeds", "steps", "tokens", unit, "train s"] + [f"{m} ({'↑' if dirs[m] else '↓'})" for m in dirs]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, by in runs.items():
        r0 = next(iter(by.values()))
        secs = np.mean([r["train_seconds"] for r in by.values()])
        cells = [
            f"`{name}`",
            str(len(by)),
            str(r0["steps"]),
            f"{r0['tokens']:,}",
            f"{r0['flops'] / scale:.3g}",
            f"{secs:.0f}",
        ]
        for m in dirs:
            text = _fmt(*stats[name][m])
            cells.append(f"**{text}**" if best[m] == name and len(runs) > 1 else text)
        rows.append("| " + " | ".join(cells) + " |")
    lines = verdicts(records, probes)
    body = [f"# Comparison at equal compute ({budget})", "", *rows, "",
            "Mean ± 95% CI (Student t) over seeds; best mean in bold. Against the first run (paired over seeds):", "",
            *(f"- {v}" for v in lines), ""]  # fmt: skip
    text = "\n".join(body)
    path.write_text(text)
    return text


def write_curves(records: list[dict], probes, path: Path, budget_kind: str) -> Path:
    """Each metric against compute, one line per run (mean over seeds) with its 95% CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, label, scale = _X[budget_kind]
    if key == "flops":
        unit, per = flop_unit(max((r["flops"] for r in records), default=0.0))
        label, scale = f"training {unit}", 1 / per
    runs, dirs = _by_run(records), _directions(probes)
    fig, axes = plt.subplots(1, len(dirs), figsize=(4.2 * len(dirs), 3.2), squeeze=False)
    for ax, (metric, higher) in zip(axes[0], dirs.items(), strict=True):
        for name, by in runs.items():
            series = [r["points"] for r in by.values()]
            n = min(map(len, series))
            x = np.array([np.mean([s[i][key] for s in series]) for i in range(n)]) * scale
            if key == "train_seconds":  # points hold a segment's seconds: accumulate
                x = np.cumsum(x)
            stats = [mean_ci([s[i]["metrics"][metric] for s in series]) for i in range(n)]
            mean = np.array([m for m, _ in stats])
            ci = np.nan_to_num(np.array([c for _, c in stats]))
            (line,) = ax.plot(x, mean, marker="o", ms=3, label=name)
            ax.fill_between(x, mean - ci, mean + ci, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel(label)
        ax.set_title(f"{metric} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(records: list[dict], probes, out: Path, budget) -> list[str]:
    """Write table.md and curves.png into ``out``; returns the verdict lines."""
    write_table(records, probes, out / "table.md", str(budget))
    write_curves(records, probes, out / "curves.png", budget.kind)
    return verdicts(records, probes)
