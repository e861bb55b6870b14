"""Mask-using segmentation methods on the canvas worlds, over seeds, each against its own baseline:

* SegAgent: NoC@85 / NoC@90 (and failures at 20 clicks) of the imitation policy against the simulated annotator it
  imitates, both with the random walker as the tool, on the same held-out examples (one run holds both);
* Mask-Adapter: mask-classification accuracy against the proposals' IoU, adapter (+ mask consistency) against plain
  mask pooling;
* MAYOR: instance IoU, leak into neighbouring instances and COCO mask AP, instance-aware against plain pixel targets;
* OneRef: grounding Acc@0.5 and mean box IoU, referring-aware against count-matched random image masking.

    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods                 # every arm x 2 seeds
    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods --arms mayor mayor-plain --seeds 0 1 2
    .venv/bin/python benchmarks/seg_methods.py --out runs/seg_methods --report        # finished runs only

Every arm trains its registered recipe through the one loop into ``OUT/ARM-sSEED`` (a finished run is reused) with
the overrides in ``ARMS``: fewer steps and examples than the recipes' defaults, so that all seven arms x two seeds
fit in about 20 minutes of a loaded 2-core CPU. Paired arms share seeds (same initialization seed, same data
order), so the report gives each metric's mean +- 95% CI over seeds (t distribution) and the paired difference to
the baseline.
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

_AGENT = ["steps=150", "examples=200", "valid_examples=24", "eval_batches=1"]
_ADAPTER = ["steps=120", "canvases=480", "gt_warmup=30", "valid_canvases=48", "eval_batches=2"]
_MAYOR = ["steps=200", "scenes=400", "valid_scenes=32", "eval_batches=2"]
_ONEREF = ["steps=150", "canvases=400", "valid_canvases=64", "eval_batches=3"]

# arm -> (recipe, overrides, the arm it is compared with, metrics reported)
ARMS = {
    "segagent": ("segagent-canvas", _AGENT, None, ["policy_NoC@85", "policy_NoC@90", "policy_NoF@90", "policy_IoU@1",
                                                   "oracle_NoC@85", "oracle_NoC@90", "oracle_NoF@90", "oracle_IoU@1"]),
    "adapter": ("mask-adapter-canvas", _ADAPTER, "pooling", ["acc@0.5", "acc@0.6", "acc@0.7", "acc@0.8", "acc@0.9",
                                                             "acc@1"]),
    "pooling": ("mask-adapter-canvas", [*_ADAPTER, "pool=mask", "consistency=0"], None,
                ["acc@0.5", "acc@0.6", "acc@0.7", "acc@0.8", "acc@0.9", "acc@1"]),
    "mayor": ("mayor-dense", _MAYOR, "mayor-plain", ["instance_iou", "leak", "AP", "AP50", "AP75"]),
    "mayor-plain": ("mayor-dense", [*_MAYOR, "targets=plain"], None, ["instance_iou", "leak", "AP", "AP50", "AP75"]),
    "oneref": ("oneref-canvas", _ONEREF, "oneref-random", ["Acc@0.5", "box_iou"]),
    "oneref-random": ("oneref-canvas", [*_ONEREF, "masking=random"], None, ["Acc@0.5", "box_iou"]),
}  # fmt: skip


def _ci(values: list[float]) -> str:
    """mean +- half-width of the 95% t interval (the mean alone for one seed)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    half = t_mean_ci(values)[1]
    return f"{m:.3f} +- {half:.3f}"


def _run(arm: str, seed: int, out: Path, extra: list[str]) -> dict:
    """Train (or reuse) one arm and seed; the final held-out evaluation."""
    folder = out / f"{arm}-s{seed}"
    if not (folder / "summary.json").is_file():
        name, over, _, _ = ARMS[arm]
        recipe = apply_overrides(get_recipe(name), [*over, f"seed={seed}", *extra])
        t = time.perf_counter()
        train(recipe, folder, progress=False)
        print(f"trained {arm} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads((folder / "summary.json").read_text())["eval"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the runs (OUT/ARM-sSEED)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--set", action="append", default=[], help="key=value override for every arm's recipe")
    p.add_argument("--report", action="store_true", help="report finished runs only (train nothing)")
    args = p.parse_args()
    out = Path(args.out)
    evals: dict[str, dict[int, dict]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            if args.report and not (out / f"{arm}-s{seed}" / "summary.json").is_file():
                continue
            evals.setdefault(arm, {})[seed] = _run(arm, seed, out, args.set)

    for arm, runs in evals.items():
        metrics, base = ARMS[arm][3], ARMS[arm][2]
        print(f"\n{arm} ({ARMS[arm][0]} {' '.join([*ARMS[arm][1], *args.set])}), seeds {sorted(runs)}")
        for k in metrics:
            line = f"  {k:14} {_ci([e[k] for e in runs.values()]):>16}"
            paired = sorted(set(runs) & set(evals.get(base, {})))
            if base and paired:
                diff = [runs[s][k] - evals[base][s][k] for s in paired]
                line += f"   {base}: {_ci([evals[base][s][k] for s in paired]):>16}   difference {_ci(diff):>16}"
            print(line)
        counts = {k: v for k, v in next(iter(runs.values())).items() if k.startswith(("n@", "instances", "grounded",
                                                                                       "rollouts"))}  # fmt: skip
        print(f"  held-out sizes per seed: {counts}")


if __name__ == "__main__":
    main()
