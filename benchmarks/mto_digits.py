"""Steps SimMIM needs to reach fixed linear-probe accuracies on scikit-learn's digits, without (the anchor) and with
MTO's weight recalibration (masklab.objectives.mto), in one process; prints the ratio of steps.

    .venv/bin/python benchmarks/mto_digits.py                       # 3 seeds x 800 steps, probed every 100 (~1 h)
    .venv/bin/python benchmarks/mto_digits.py --steps 40 --every 20 --seeds 1    # smoke run

Both variants train the ``simmim-digits`` recipe (same init, batches and masks per seed; only ``mto`` differs) and
are probed at step 0 and every ``--every`` steps on the mean-pooled encoder features with every patch visible:

- ``linear``: the ``digits-linear`` probe of ``masklab compare`` (logistic regression on the 1347 training images);
- ``linear20``: the same logistic regression fit on 20 labelled images per class (5 fixed draws, mean accuracy),
  where the features matter more (a randomly initialised encoder already reaches ~94% with ``linear``);
- ``knn``: the ``digits-knn`` probe (cosine 10-NN).

The thresholds (``--thresholds``) were fixed from a pilot run at seed 11, which is not among the reported seeds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matmuls: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from masklab.compare.report import mean_ci_text

PROBES = ("linear", "linear20", "knn")


def probe(folder: Path, recipe) -> dict[str, float]:
    from sklearn.neighbors import KNeighborsClassifier

    from masklab.compare.probes.image import _digit_features
    from masklab.train.probe import linear_probe

    ftr, ytr, fte, yte = _digit_features(folder, recipe)
    rng = np.random.default_rng(0)  # the same 5 draws of 20 labelled images per class for every checkpoint
    few = []
    for _ in range(5):
        idx = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:20] for c in range(10)])
        few.append(linear_probe(ftr[idx], ytr[idx], fte, yte))
    knn = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(ftr, ytr).score(fte, yte)
    return {"linear": 100 * linear_probe(ftr, ytr, fte, yte), "linear20": 100 * float(np.mean(few)),
            "knn": 100 * float(knn)}  # fmt: skip


def run(mto: bool, seed: int, steps: int, every: int) -> dict:
    """Train one variant, probing at step 0 and every ``every`` steps; returns its points."""
    import torch

    from masklab.train import checkpoint
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    torch.set_num_threads(1)
    over = [f"mto={str(mto).lower()}", f"seed={seed}", f"steps={steps}", "eval_every=0", "ckpt_every=0"]
    recipe = apply_overrides(get_recipe("simmim-digits"), over)
    with tempfile.TemporaryDirectory(prefix="mto-") as tmp:
        out = Path(tmp) / "run"
        init = Path(tmp) / "init"
        checkpoint.save(init, recipe.build().objective, recipe={}, step=0)  # the same weights the run starts from
        points, seconds = [{"step": 0, **probe(init, recipe)}], 0.0
        for stop in range(every, steps + 1, every):
            summary = train(recipe, out, resume=stop > every, progress=False, stop_at=None if stop == steps else stop)
            seconds += summary["train_seconds"]
            points.append({"step": summary["step"], **probe(out / "model", recipe), "l1": summary["eval"]["l1"]})
    return {"mto": mto, "seed": seed, "points": points, "train_seconds": seconds}


def first_step(points: list[dict], probe_name: str, threshold: float) -> int | None:
    return next((p["step"] for p in points if p[probe_name] >= threshold), None)


def report(results: list[dict], thresholds: dict[str, float], steps: int) -> None:
    for r in results:
        row = "  ".join(f"{p['step']}:" + "/".join(f"{p[k]:.1f}" for k in PROBES) for p in r["points"])
        print(f"mto={r['mto']!s:5} seed={r['seed']} ({r['train_seconds']:.0f} s)  step:{'/'.join(PROBES)}  {row}")
    print()
    by = {m: [r for r in results if r["mto"] is m] for m in (False, True)}
    for name, threshold in thresholds.items():
        reached = {m: [first_step(r["points"], name, threshold) for r in by[m]] for m in by}
        text = {m: ", ".join(str(s) if s is not None else f">{steps}" for s in reached[m]) for m in by}
        line = f"{name} >= {threshold}: steps per seed  SimMIM [{text[False]}]  MTO [{text[True]}]"
        if all(s is not None for m in by for s in reached[m]):
            base, mto = statistics.fmean(reached[False]), statistics.fmean(reached[True])
            line += f"  mean {base:.0f} vs {mto:.0f}  ratio MTO/SimMIM {mto / base if base else float('nan'):.2f}"
        print(line)
    for name in PROBES:
        final = {m: [r["points"][-1][name] for r in by[m]] for m in by}
        diff = [b - a for a, b in zip(final[False], final[True], strict=True)]
        print(f"{name} at step {steps}: SimMIM {mean_ci_text(final[False], 2)}  MTO {mean_ci_text(final[True], 2)}  "
              f"paired MTO - SimMIM {mean_ci_text(diff, 2)}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained in parallel processes (one thread each)")
    ap.add_argument("--thresholds", default="linear=94,linear20=87,knn=80", help="probe=accuracy,...")
    ap.add_argument("--json", help="also write every point to this file")
    args = ap.parse_args()
    if args.steps < 1 or args.every < 1 or args.steps % args.every:
        raise SystemExit("--every must divide --steps")
    thresholds = {k: float(v) for k, v in (item.split("=") for item in args.thresholds.split(","))}
    jobs = [(mto, seed) for seed in range(args.seeds) for mto in (False, True)]
    with ProcessPoolExecutor(args.jobs) as pool:
        mtos, seeds = zip(*jobs, strict=True)
        results = list(pool.map(run, mtos, seeds, [args.steps] * len(jobs), [args.every] * len(jobs)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    report(results, thresholds, args.steps)


if __name__ == "__main__":
    main()
