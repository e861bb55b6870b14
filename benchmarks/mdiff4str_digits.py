"""MDiff4STR against vanilla masked diffusion and an autoregressive reader on digit strings (word accuracy).

Trains the three recipes ``mdiff4str-digits``, ``mdm-str-digits`` and ``ar-str-digits`` (one network: a ViT encoder
and a BERT decoder with cross-attention) for each seed through the training loop, then reads the 512 held-out
strings (unseen handwriting) with every MDiff4STR decoder at ``--decode-steps`` steps (3, the paper's setting)
and the autoregressive reader greedily, and prints word accuracy per seed, the mean with a 95% t interval over
seeds, and the paired differences. Runs that finished are not trained again, so several processes can train
different seeds side by side and a last call with every seed prints the table:

    .venv/bin/python benchmarks/mdiff4str_digits.py --seeds 0 1 2 --steps 2000 --out runs/mdiff4str_bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from masklab.compare.report import mean_ci_text

# method -> (recipe, its overrides); the last two split MDiff4STR's two changes (--methods to run them)
METHODS = {
    "mdiff4str": ("mdiff4str-digits", []),
    "mdm": ("mdm-str-digits", []),
    "ar": ("ar-str-digits", []),
    "six-strategies": ("mdiff4str-digits", ["reflect_weight=0"]),  # the noising strategies without the reflect loss
    "random+reflect": ("mdm-str-digits", ["reflect_weight=1"]),  # vanilla masking with the reflect loss
}


def recipe_for(method: str, seed: int, args):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    name, extra = METHODS[method]
    return apply_overrides(get_recipe(name), [f"seed={seed}", f"steps={args.steps}", "eval_every=0", "ckpt_every=0",
                                              *extra, *args.override])  # fmt: skip


def train_one(method: str, seed: int, args) -> Path:
    from masklab.train.loop import trained

    out = Path(args.out) / f"{method}-seed{seed}"
    trained(recipe_for(method, seed, args), out)
    return out


@torch.no_grad()
def read_all(method: str, seed: int, folder: Path, args) -> dict[str, float]:
    """Word accuracy of every decoder (the greedy reader for the autoregressive model) on the held-out strings."""
    from masklab.corrupt import keyed
    from masklab.objectives.mdiff4str import word_accuracy
    from masklab.sample.str_decoders import STR_DECODER

    recipe = recipe_for(method, seed, args)
    task = recipe.build()
    obj = task.objective
    obj.load_model(folder / "model")
    obj.eval()
    pixels, labels = obj.world.unpack(task.valid)
    names = ["greedy"] if method == "ar" else STR_DECODER.names()
    scores = {}
    for name in names:
        right, passes = 0.0, 0
        for start in range(0, len(labels), 128):
            part = slice(start, start + 128)
            keys = keyed.eval_keys(seed, torch.arange(start, start + len(labels[part])))
            out = obj.recognize(pixels[part], decoder=None if method == "ar" else name, steps=args.decode_steps,
                                keys=keys)  # fmt: skip
            right += float(word_accuracy(out, labels[part])) * len(labels[part])
            passes = max(passes, out.passes)
        scores[name] = right / len(labels)
        scores[f"{name}_passes"] = passes
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--decode-steps", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["mdiff4str", "mdm", "ar"], choices=list(METHODS))
    ap.add_argument("--override", nargs="*", default=[], help="key=value overrides for every recipe")
    ap.add_argument("--out", default="runs/mdiff4str_bench")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict[int, dict]] = {m: {} for m in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            folder = train_one(method, seed, args)
            cache = folder / f"read_steps{args.decode_steps}.json"
            if not cache.exists():
                cache.write_text(json.dumps(read_all(method, seed, folder, args)))
            results[method][seed] = json.loads(cache.read_text())
    print(f"word accuracy (%) on 512 held-out strings, {args.steps} training steps, {args.decode_steps} decoding "
          f"steps, seeds {args.seeds}")  # fmt: skip
    print(f"{'method':<10} {'decoder':<20} {'passes':>6}  {'mean ± 95% CI':>14}  per seed")
    for method, per_seed in results.items():
        for name in [k for k in next(iter(per_seed.values())) if not k.endswith("_passes")]:
            vals = [per_seed[s][name] for s in args.seeds]
            passes = max(per_seed[s][f"{name}_passes"] for s in args.seeds)
            print(f"{method:<10} {name:<20} {passes:>6}  {mean_ci_text(vals, 1, 100):>14}  "
                  + " ".join(f"{100 * v:.1f}" for v in vals))  # fmt: skip
    if {"mdiff4str", "mdm", "ar"} <= set(results):
        print("paired differences (percentage points, mean ± 95% CI over seeds)")
        for a, da, b, db in [("mdiff4str", "low_confidence", "mdm", "low_confidence"),
                             ("mdiff4str", "low_confidence", "ar", "greedy"),
                             ("mdm", "low_confidence", "ar", "greedy")]:  # fmt: skip
            diff = [results[a][s][da] - results[b][s][db] for s in args.seeds]
            print(f"  {a} {da} - {b} {db}: {mean_ci_text(diff, 1, 100)}")


if __name__ == "__main__":
    main()
