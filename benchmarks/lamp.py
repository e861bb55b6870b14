"""LaMP in miniature against its ablations on synthetic captioned skeleton motions: retrieval R@1 and the
parameters of generated motions.

For each seed, trains ``lamp-motions`` (contrastive alignment + text-conditioned masked motion tokens) and the
ablations named by ``--runs`` through the training loop:

- ``lamp``: the recipe as registered;
- ``no-contrastive``: ``contrastive_weight=0``, so the generator reads an untrained text head over the frozen
  sentence embeddings (no language-motion alignment);
- ``bidirectional``: ``causal=false``, the masked transformer without LaMP's autoregressive attention (MoMask's).

Each run is scored on held-out data (fresh seeds of :func:`masklab.data.motions.sample_motions`):

- retrieval: three galleries of one motion per parameter combination (108 pairs each, chance 1/108), each motion
  with its caption in a random phrasing; text-to-motion and motion-to-text R@1 by cosine similarity;
- generation: one motion per distinct caption (216) by iterative unmasking (10 steps, temperature 1, top 10% of
  the logits, guidance ``--guidance``), decoded through the codebook; :func:`masklab.data.motions.recover_params`
  reads the parameters back, which are compared with the caption's: the share with all four right (1 minus the
  parameter error), each parameter's accuracy, and the mean absolute speed (cycles) and amplitude (units) error;
- the same generation with the condition dropped (the unconditional model of classifier-free guidance, trained by
  the 10% condition dropout): the chance level of the reader on this model's motions;
- the tokenizer's ceiling: the parameters read back from the decoded tokens of held-out real motions.

It prints each seed, the mean with a 95% t interval over seeds and the differences paired by seed. Finished runs are
not trained again:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lamp.py --seeds 0 1 2 --steps 400 --out runs/lamp_bench
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from masklab.compare.report import mean_ci_text

RUNS = {"lamp": [], "no-contrastive": ["contrastive_weight=0"], "bidirectional": ["causal=false"]}
GALLERIES = 3


def recipe_for(run: str, seed: int, args):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    return apply_overrides(get_recipe("lamp-motions"), [f"seed={seed}", f"steps={args.steps}", *RUNS[run],
                                                        *args.override])  # fmt: skip


def param_scores(got: torch.Tensor, want: torch.Tensor, prefix: str) -> dict[str, float]:
    """Accuracy of all four parameters and of each, and the speed / amplitude absolute errors, of recovered
    combination ids ``got`` against ``want`` [N]."""
    from masklab.data.motions import AMPLITUDES, SPEEDS, all_params

    params = all_params()
    pairs = [(params[int(i)], params[int(j)]) for i, j in zip(got, want, strict=True)]
    out = {f"{prefix}all": statistics.fmean(a == b for a, b in pairs)}
    for name in ("action", "direction", "speed", "amplitude"):
        out[f"{prefix}{name}"] = statistics.fmean(getattr(a, name) == getattr(b, name) for a, b in pairs)
    out[f"{prefix}speed_mae"] = statistics.fmean(abs(SPEEDS[a.speed] - SPEEDS[b.speed]) for a, b in pairs)
    out[f"{prefix}amp_mae"] = statistics.fmean(abs(AMPLITUDES[a.amplitude] - AMPLITUDES[b.amplitude]) for a, b in pairs)
    return out


@torch.no_grad()
def evaluate(objective, recipe, guidance: float) -> dict[str, float]:
    from masklab.corrupt import keyed
    from masklab.data.motions import TEMPLATES, recover_params, sample_motions
    from masklab.models.lamp import maskgit_generate
    from masklab.objectives.lamp import retrieval_r1

    model = objective.model.eval()
    q, T = model.quantizer, recipe.length
    scores: dict[str, float] = {"t2m_r1": 0.0, "m2t_r1": 0.0}
    real_ids, real_combo = [], []
    for g in range(GALLERIES):
        data = sample_motions(108, seed=100 + g, length=T, noise=recipe.noise, combos=torch.arange(108).numpy())
        ids = q.encode(data.joints)
        t2m, m2t = retrieval_r1(model.text_features(data.caption_id), model.motion_features(ids), data.combo)
        scores["t2m_r1"] += t2m / GALLERIES
        scores["m2t_r1"] += m2t / GALLERIES
        real_ids.append(ids)
        real_combo.append(data.combo)
    scores.update(param_scores(recover_params(q.decode(torch.cat(real_ids))), torch.cat(real_combo), "tokens_"))

    caption_ids = torch.arange(108 * len(TEMPLATES))  # every distinct caption once
    cond = model.text_features(caption_ids)
    keys = keyed.eval_keys(recipe.seed, caption_ids)
    gen = model.generator

    def guided(ids: torch.Tensor) -> torch.Tensor:
        c = gen(ids, cond)
        if guidance == 1.0:
            return c
        u = gen(ids, cond, torch.ones(len(ids), dtype=torch.bool))
        return u + guidance * (c - u)

    def unconditional(ids: torch.Tensor) -> torch.Tensor:
        return gen(ids, cond, torch.ones(len(ids), dtype=torch.bool))

    want = caption_ids // len(TEMPLATES)
    for prefix, fn in (("gen_", guided), ("uncond_", unconditional)):
        ids = maskgit_generate(fn, len(caption_ids), T, gen.mask_id, 10, keys, temperature=1.0, keep=0.1)
        scores.update(param_scores(recover_params(q.decode(ids)), want, prefix))
    return scores


def score(run: str, seed: int, args) -> dict[str, float]:
    from masklab.train.loop import trained

    out = Path(args.out) / f"{run}-seed{seed}"
    cache = out / f"scores-g{args.guidance:g}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    recipe = recipe_for(run, seed, args)
    trained(recipe, out)
    objective = recipe.build().objective
    objective.load_model(out / "model")
    scores = evaluate(objective, recipe, args.guidance)
    cache.write_text(json.dumps(scores))
    return scores


METRICS = ["t2m_r1", "m2t_r1", "gen_all", "gen_action", "gen_direction", "gen_speed", "gen_amplitude", "gen_speed_mae",
           "gen_amp_mae", "uncond_all", "tokens_all"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--runs", nargs="+", default=["lamp", "no-contrastive"], choices=list(RUNS))
    ap.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale of generation")
    ap.add_argument("--override", nargs="*", default=[], help="key=value overrides for every run")
    ap.add_argument("--out", default="runs/lamp_bench")
    args = ap.parse_args()
    torch.set_num_threads(1)

    results = {run: [score(run, s, args) for s in args.seeds] for run in args.runs}
    print(f"lamp-motions, {args.steps} steps, seeds {args.seeds}, guidance {args.guidance:g}")
    for run, per_seed in results.items():
        for s, r in zip(args.seeds, per_seed, strict=True):
            print(f"  {run:15s} seed {s}: " + "  ".join(f"{k} {r[k]:.3f}" for k in METRICS))
    print(f"\n{'metric':15s}" + "".join(f"{run:>22s}" for run in results))
    for k in METRICS:
        print(f"{k:15s}" + "".join(f"{mean_ci_text([r[k] for r in results[run]]):>22s}" for run in results))
    base = results.get("lamp")
    for run, per_seed in results.items():
        if run == "lamp" or base is None:
            continue
        print(f"\nlamp minus {run}, paired by seed:")
        for k in METRICS:
            print(f"  {k:15s} {mean_ci_text([a[k] - b[k] for a, b in zip(base, per_seed, strict=True)])}")


if __name__ == "__main__":
    main()
