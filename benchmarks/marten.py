"""Marten's VQAMask against VQA alone on read-the-canvas question answering, over seeds (issue 18 item 12):

    .venv/bin/python benchmarks/marten.py --out runs/marten                 # both arms x 1 seed
    .venv/bin/python benchmarks/marten.py --out runs/marten --seeds 0 1 2 --set steps=400
    .venv/bin/python benchmarks/marten.py --out runs/marten --report        # finished runs only

Each arm trains the registered recipe ``marten-canvas`` through the one loop into ``OUT/ARM-sSEED`` (a finished run
is reused) with the overrides in ``ARMS`` (fewer steps and examples than the recipe's defaults, to fit a loaded
2-core CPU). The arms share seeds (initialization, data order), so the report gives each metric's mean +- 95% CI
over seeds (t distribution; the mean alone for one seed) and the paired difference mask - none. The metrics: answer
accuracy on held-out canvases (``acc``; the mask generator is not used to answer), the majority-answer floor, and
the mask generator's held-out IoU (mask arm only).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny convolutions: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from masklab.compare.report import mean_ci as t_mean_ci  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

_COMMON = ["steps=200", "examples=600", "valid_examples=256", "eval_batches=4"]
ARMS = {"mask": ["mask_weight=1.0"], "none": ["mask_weight=0"]}  # arm -> its overrides of marten-canvas
METRICS = ("acc", "majority", "mask_iou")


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
        recipe = apply_overrides(get_recipe("marten-canvas"), [*_COMMON, *ARMS[arm], f"seed={seed}", *extra])
        t = time.perf_counter()
        train(recipe, folder, progress=False)
        print(f"trained {arm} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads((folder / "summary.json").read_text())["eval"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs (OUT/ARM-sSEED)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
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
    mask, none = evals.get("mask", {}), evals.get("none", {})
    print(f"\nmarten-canvas {' '.join([*_COMMON, *args.set])}")
    for k in METRICS:
        line = f"  {k:9}"
        for arm, runs in evals.items():
            if all(k in e for e in runs.values()):
                line += f"   {arm} {ci([e[k] for e in runs.values()]):>15} (seeds {sorted(runs)})"
        paired = [s for s in sorted(set(mask) & set(none)) if k in mask[s] and k in none[s]]
        if paired:
            line += f"   mask - none {ci([mask[s][k] - none[s][k] for s in paired]):>15}"
        print(line)
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out questions per seed: {first.get('examples')}")


if __name__ == "__main__":
    main()
