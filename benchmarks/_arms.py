"""The loop of the arm-by-seed benchmarks (``osm.py``, ``pmp.py``, ``marten.py``, ``seg_methods.py``).

Each arm is a registered recipe with overrides. :func:`main` trains (or reuses) every arm and seed through the one
loop into ``OUT/ARM-sSEED``, then prints each metric's mean +- half-width of the 95% t interval over seeds and,
for an arm with a baseline, the baseline's and the paired difference (arms share seeds: initialization and data
order). ``--report`` reads the finished runs only.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from masklab.compare.report import mean_ci_text
from masklab.train.loop import trained
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides

__all__ = ["Arm", "run", "main"]


@dataclass(frozen=True)
class Arm:
    recipe: str
    overrides: tuple[str, ...]
    metrics: tuple[str, ...]
    baseline: str | None = None  # the arm this one is compared with, seed by seed


def run(name: str, arm: Arm, seed: int, out: Path, extra: list[str]) -> dict:
    """Train (or reuse, if trained with this very recipe: :func:`masklab.train.loop.trained`) one arm and seed; its
    final held-out evaluation."""
    recipe = apply_overrides(get_recipe(arm.recipe), [*arm.overrides, f"seed={seed}", *extra])
    folder, t = out / f"{name}-s{seed}", time.perf_counter()
    fresh = not (folder / "summary.json").is_file()
    summary = trained(recipe, folder)
    if fresh:
        print(f"trained {name} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return summary["eval"]


def _report(arms: dict[str, Arm], evals: dict[str, dict[int, dict]], extra: list[str]) -> None:
    for name, runs in evals.items():
        arm = arms[name]
        print(f"\n{name} ({arm.recipe} {' '.join([*arm.overrides, *extra])}), seeds {sorted(runs)}")
        base = evals.get(arm.baseline, {})
        for k in arm.metrics:
            if not all(k in e for e in runs.values()):
                continue
            line = f"  {k:14} {mean_ci_text([e[k] for e in runs.values()]):>16}"
            paired = [s for s in sorted(set(runs) & set(base)) if k in base[s]]
            if paired:
                diff = [runs[s][k] - base[s][k] for s in paired]
                was = mean_ci_text([base[s][k] for s in paired])
                line += f"   {arm.baseline}: {was:>16}   difference {mean_ci_text(diff):>16}"
            print(line)


def main(doc: str, arms: dict[str, Arm], seeds: list[int]) -> tuple[argparse.Namespace, dict[str, dict[int, dict]]]:
    """Parse ``--out --arms --seeds --set --report``, train and report; returns the arguments and the evaluations
    (arm -> seed -> metrics) for a script's own extra lines."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs (OUT/ARM-sSEED)")
    p.add_argument("--arms", nargs="+", default=list(arms), choices=list(arms))
    p.add_argument("--seeds", nargs="+", type=int, default=seeds)
    p.add_argument("--set", action="append", default=[], help="key=value override for every arm's recipe")
    p.add_argument("--report", action="store_true", help="report finished runs only (train nothing)")
    args = p.parse_args()
    out = Path(args.out)
    evals: dict[str, dict[int, dict]] = {}
    for name in args.arms:
        for seed in args.seeds:
            if args.report and not (out / f"{name}-s{seed}" / "summary.json").is_file():
                continue
            evals.setdefault(name, {})[seed] = run(name, arms[name], seed, out, args.set)
    _report(arms, evals, args.set)
    return args, evals
