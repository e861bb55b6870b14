"""W2v-BERT against its contrastive module alone on synthetic Gaussian-HMM frames: code-state NMI and the
``frames-state`` probe.

For each seed, trains ``w2v-bert-hmm`` (L = L_c + L_m) and the contrastive module alone at the same depth
(``mlm_weight=0 depth=4 mlm_depth=0``: wav2vec 2.0 with this network) through the training loop, then scores on
held-out sequences (seed 4 of the recipe's HMM):

- code-state NMI: sklearn's ``normalized_mutual_info_score`` between each frame's quantizer code (argmax) and the
  hidden state that emitted it;
- ``frames-state``: the ``masklab compare`` probe (a logistic regression on the frozen per-frame features names
  the hidden state; fit on 100 sequences, scored on 100 others), next to the single-frame Bayes rate.

It prints each seed, the mean with a 95% t interval over seeds and the paired differences. Finished runs are not
trained again:

    .venv/bin/python benchmarks/w2vbert_hmm.py --seeds 0 1 2 --out runs/w2vbert_bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from masklab.compare.report import mean_ci_text

RUNS = {"w2v-bert": [], "contrastive": ["mlm_weight=0", "depth=4", "mlm_depth=0"]}


def recipe_for(run: str, seed: int, args):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    return apply_overrides(get_recipe("w2v-bert-hmm"), [f"seed={seed}", f"steps={args.steps}", *RUNS[run],
                                                        *args.override])  # fmt: skip


def score(run: str, seed: int, args) -> dict[str, float]:
    from masklab.compare.probes.frames import frames_state, single_frame_bayes
    from masklab.objectives.w2vbert import code_state_nmi
    from masklab.train.loop import trained

    out = Path(args.out) / f"{run}-seed{seed}"
    cache = out / "scores.json"
    if cache.exists():
        return json.loads(cache.read_text())
    recipe = recipe_for(run, seed, args)
    trained(recipe, out)
    objective = recipe.build().objective
    objective.load_model(out / "model")
    frames, states = recipe.hmm.sample(100, recipe.length, seed=4)
    scores = {
        "nmi": code_state_nmi(objective.model.codes(frames), states),
        "codes_used": int(objective.model.codes(frames).unique().numel()),
        "frames_state_acc": frames_state(out, recipe)["frames_state_acc"] / 100,
        "bayes_single_frame": single_frame_bayes(recipe.hmm, frames, states),
    }
    cache.write_text(json.dumps(scores))
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--override", nargs="*", default=[], help="key=value overrides for every run")
    ap.add_argument("--out", default="runs/w2vbert_bench")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {run: {seed: score(run, seed, args) for seed in args.seeds} for run in args.runs}
    print(f"w2v-bert-hmm, {args.steps} steps, seeds {args.seeds}; held-out: 100 sequences (probe: 100 + 100)")
    metrics = ["nmi", "frames_state_acc", "codes_used", "bayes_single_frame"]
    print(f"{'run':<12} " + " ".join(f"{m:>24}" for m in metrics))
    for run, per_seed in results.items():
        cells = [mean_ci_text([per_seed[s][m] for s in args.seeds]) for m in metrics]
        print(f"{run:<12} " + " ".join(f"{c:>24}" for c in cells))
        for s in args.seeds:
            print(f"{'  seed ' + str(s):<12} " + " ".join(f"{per_seed[s][m]:>24.3f}" for m in metrics))
    if {"w2v-bert", "contrastive"} <= set(results):
        for m in ("nmi", "frames_state_acc"):
            diff = [results["w2v-bert"][s][m] - results["contrastive"][s][m] for s in args.seeds]
            print(f"paired w2v-bert - contrastive, {m}: {mean_ci_text(diff)}")


if __name__ == "__main__":
    main()
