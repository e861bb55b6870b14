"""OSM's generative mask classification against a closed-set classifier head on the same MaskQFormer tokens, on
the canvas world, over seeds (issue 18 item 10):

    .venv/bin/python benchmarks/osm.py --out runs/osm                  # both heads x 2 seeds
    .venv/bin/python benchmarks/osm.py --out runs/osm --seeds 0 1 2 --set steps=400
    .venv/bin/python benchmarks/osm.py --out runs/osm --report         # finished runs only

Each arm trains the registered recipe ``osm-canvas`` through the one loop into ``OUT/ARM-sSEED`` (a finished run
is reused) with the overrides in ``ARMS`` (fewer steps and canvases than the recipe's defaults, to fit a loaded
2-core CPU). The arms share seeds (initialization, data order, proposals), so the report gives each metric's mean
+- 95% CI over seeds (t distribution) and the paired difference generate - closed. The metrics: exact class names
from ground-truth masks (``acc@1``) and from proposals of IoU >= 0.5 (``acc@prop``), and the share of generated
answers that name no class (``unknown``; 0 by construction for the closed head).
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

_COMMON = ["steps=250", "canvases=600", "valid_canvases=64", "eval_batches=2"]
ARMS = {"generate": ["head=generate"], "closed": ["head=closed"]}  # arm -> its overrides of osm-canvas
METRICS = ("acc@1", "acc@prop", "unknown")


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
        recipe = apply_overrides(get_recipe("osm-canvas"), [*_COMMON, *ARMS[arm], f"seed={seed}", *extra])
        t = time.perf_counter()
        train(recipe, folder, progress=False)
        print(f"trained {arm} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads((folder / "summary.json").read_text())["eval"]


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
    gen, closed = evals.get("generate", {}), evals.get("closed", {})
    print(f"\nosm-canvas {' '.join([*_COMMON, *args.set])}")
    for k in METRICS:
        line = f"  {k:9}"
        for arm, runs in evals.items():
            line += f"   {arm} {ci([e[k] for e in runs.values()]):>15} (seeds {sorted(runs)})"
        paired = sorted(set(gen) & set(closed))
        if paired:
            line += f"   generate - closed {ci([gen[s][k] - closed[s][k] for s in paired]):>15}"
        print(line)
    first = next(iter(next(iter(evals.values())).values()), {}) if evals else {}
    print(f"  held-out objects per seed: ground truth {first.get('n@1')}, proposals {first.get('n@prop')}")


if __name__ == "__main__":
    main()
