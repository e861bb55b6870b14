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

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from _arms import Arm, main  # noqa: E402

from masklab.compare.report import mean_ci_text
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

_COMMON = ("steps=250", "canvases=600", "valid_canvases=64", "eval_batches=3")
METRICS = ("R@0.5", "R1@0.5", "best_iou")
ARMS = {
    "prompt": Arm("pmp-canvas", (*_COMMON, "prompt=true"), METRICS, baseline="none"),
    "none": Arm("pmp-canvas", (*_COMMON, "prompt=false"), METRICS),
}


def swapped(seed: int, out: Path, extra: list[str]) -> dict:
    """The trained prompt arm's held-out metrics when every example reads the previous example's expression."""
    arm = ARMS["prompt"]
    recipe = apply_overrides(get_recipe(arm.recipe), [*arm.overrides, f"seed={seed}", *extra])
    task = recipe.build()
    task.objective.load_model(out / f"prompt-s{seed}" / "model")
    rows = task.valid[: recipe.eval_batches * task.objective.eval_batch_size]
    a, b = task.objective.layout.spans["prompt"]
    rows = rows.clone()
    rows[:, a:b] = torch.roll(rows[:, a:b], 1, 0)  # the expression of the example before
    return task.objective.evaluate(rows, seed=0, max_batches=recipe.eval_batches)


if __name__ == "__main__":
    args, evals = main(__doc__, ARMS, seeds=[0, 1])
    own = evals.get("prompt", {})
    if own:
        other = {s: swapped(s, Path(args.out), args.set) for s in sorted(own)}
        print("  prompt arm, each example given the previous example's expression (swapped):")
        for k in METRICS:
            diff = [other[s][k] - own[s][k] for s in sorted(own)]
            swapped = mean_ci_text([o[k] for o in other.values()])
            print(f"  {k:9}   swapped {swapped:>15}   swapped - own {mean_ci_text(diff):>15}")
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out referring examples per seed: {first.get('examples')}")
