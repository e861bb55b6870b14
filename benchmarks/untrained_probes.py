"""The text probes on untrained encoders: the floor every claim in docs/claims.md should be read against.

Trains one step at a learning rate of 1e-12 (so the weights are the seed's initialisation, saved as a normal
checkpoint) and runs the shared text probes on it, for each seed::

    python benchmarks/untrained_probes.py --set preset=micro --set tokenizer=bytes --set seq_len=128
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from masklab.compare.probes import PROBE
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mlm")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--probe", default="keyword,keyword-ft,module,tagging")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    ap.add_argument("--out", default="runs/untrained_probes")
    args = ap.parse_args()
    fixed = ["steps=1", "lr=1e-12", "warmup=0", "eval_every=0", "ckpt_every=0", "eval_batches=1"]
    results = {}
    for seed in range(args.seeds):
        recipe = apply_overrides(get_recipe(args.recipe), [*args.set, *fixed, f"seed={seed}"])
        folder = Path(args.out) / f"seed{seed}"
        train(recipe, folder, progress=False)
        results[seed] = {}
        for name in args.probe.split(","):
            results[seed].update(PROBE.get(name)(folder / "model", recipe))
        print(seed, {k: round(v, 2) for k, v in results[seed].items()}, flush=True)
    for metric in results[0]:
        v = np.array([r[metric] for r in results.values()])
        print(f"{metric}: {v.mean():.2f} (seeds {', '.join(f'{x:.1f}' for x in v)})")
    (Path(args.out) / "probes.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
