"""Prompt-guided Mask Proposal against the same query-based proposer without the prompt, on canvas referring
examples, over seeds (issue 18 item 9):

    .venv/bin/python benchmarks/pmp.py --out runs/pmp                  # both arms x 2 seeds
    .venv/bin/python benchmarks/pmp.py --out runs/pmp --seeds 0 1 2 --set steps=400
    .venv/bin/python benchmarks/pmp.py --out runs/pmp --report         # finished runs only

Each arm trains the registered recipe ``pmp-canvas`` through the one loop into ``OUT/ARM-sSEED`` (a finished run
is reused) with the overrides in ``ARMS`` (fewer steps and canvases than the recipe's defaults, to fit a loaded
2-core CPU). The arms share seeds (initialization, data order), so the report gives each metric's mean +- 95% CI
over seeds (t distribution) and the paired difference prompt - none. The metrics: recall at IoU 0.5 of the referred
object among all proposals (``R@0.5``) and for the top-scored proposal (``R1@0.5``), and the mean best IoU; for the
prompted arm also the same metrics when each held-out example is given the expression of the example before it
(``swapped``: mostly another object of the same canvas), which tells whether the proposals follow the prompt.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny convolutions: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from masklab.compare.report import mean_ci as t_mean_ci  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

_COMMON = ["steps=250", "canvases=600", "valid_canvases=64", "eval_batches=3"]
ARMS = {"prompt": ["prompt=true"], "none": ["prompt=false"]}  # arm -> its overrides of pmp-canvas
METRICS = ("R@0.5", "R1@0.5", "best_iou")


def ci(values: list[float]) -> str:
    """mean +- half-width of the 95% t interval (the mean alone for one value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    return f"{m:.3f} +- {t_mean_ci(values)[1]:.3f}"


def run(arm: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Train (or reuse) one arm and seed; its final held-out evaluation."""
    folder = out / f"{arm}-s{seed}"
    if not (folder / "summary.json").is_file():
        recipe = apply_overrides(get_recipe("pmp-canvas"), [*_COMMON, *ARMS[arm], f"seed={seed}", *extra])
        t = time.perf_counter()
        train(recipe, folder, progress=False)
        print(f"trained {arm} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads((folder / "summary.json").read_text())["eval"]


def swapped(arm: str, seed: int, out: Path, extra: list[str]) -> dict:
    """The trained arm's held-out metrics when every example reads the previous example's expression."""
    recipe = apply_overrides(get_recipe("pmp-canvas"), [*_COMMON, *ARMS[arm], f"seed={seed}", *extra])
    task = recipe.build()
    task.objective.load_model(out / f"{arm}-s{seed}" / "model")
    rows = task.valid[: recipe.eval_batches * task.objective.eval_batch_size]
    a, b = task.objective.layout.spans["prompt"]
    rows = rows.clone()
    rows[:, a:b] = torch.roll(rows[:, a:b], 1, 0)  # the expression of the example before
    return task.objective.evaluate(rows, seed=0, max_batches=recipe.eval_batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs (OUT/ARM-sSEED)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--set", action="append", default=[], help="key=value override for both arms")
    p.add_argument("--report", action="store_true", help="report finished runs only (train nothing)")
    args = p.parse_args()
    out = Path(args.out)
    evals: dict[str, dict[int, dict]] = {}
    for seed in args.seeds:
        for arm in ARMS:
            if args.report and not (out / f"{arm}-s{seed}" / "summary.json").is_file():
                continue
            evals.setdefault(arm, {})[seed] = run(arm, seed, out, args.set)
    with_prompt, without = evals.get("prompt", {}), evals.get("none", {})
    print(f"\npmp-canvas {' '.join([*_COMMON, *args.set])}")
    for k in METRICS:
        line = f"  {k:9}"
        for arm, runs in evals.items():
            line += f"   {arm} {ci([e[k] for e in runs.values()]):>15} (seeds {sorted(runs)})"
        paired = sorted(set(with_prompt) & set(without))
        if paired:
            line += f"   prompt - none {ci([with_prompt[s][k] - without[s][k] for s in paired]):>15}"
        print(line)
    if with_prompt:
        other = [swapped("prompt", seed, out, args.set) for seed in sorted(with_prompt)]
        print("  prompt arm, each example given the previous example's expression (swapped):")
        for k in METRICS:
            diff = [o[k] - with_prompt[s][k] for o, s in zip(other, sorted(with_prompt), strict=True)]
            print(f"  {k:9}   swapped {ci([o[k] for o in other]):>15}   swapped - own {ci(diff):>15}")
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out referring examples per seed: {first.get('examples')}")


if __name__ == "__main__":
    main()
