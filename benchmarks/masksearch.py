"""MaskSearch's RAMP in miniature: exact-match accuracy of a reader that fills masked docstring spans, trained and
scored with a BM25 passage of stdlib code before the docstring or without one, by the number of masked spans (the
paper's curriculum axis).

For each seed, trains ``masksearch-mini`` twice through the training loop, ``retrieval=bm25`` and
``retrieval=none`` (the same rows of ``seq_len`` tokens, model and steps: equal compute), then scores the held-out
examples (docstrings of the valid files). The retrieval-trained reader is also scored with the passage taken from
other files than the docstring's own (``bm25-other-files``: how much of its gain comes from the source file) and
with no passage. Beside the readers, ``in passage`` is the share of answers that occur verbatim in the part of the
passage the row keeps: the most a pure copier could fill.

It prints span and example exact match per number of spans k, the mean with a 95% t interval over seeds and the
paired differences. Finished runs are not trained again:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/masksearch.py --seeds 0 1 2 --steps 200 --out runs/masksearch_bench
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from masklab.compare.report import mean_ci_text

ARMS = ("bm25", "none")
SCORED = {"bm25": ("bm25", "bm25-other-files", "none"), "none": ("none",)}  # trained arm -> passages scored


def recipe_for(arm: str, seed: int, args):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    return apply_overrides(get_recipe("masksearch-mini"), [f"retrieval={arm}", f"seed={seed}", f"steps={args.steps}",
                                                           *args.override])  # fmt: skip


def by_k(objective, rows: torch.Tensor, max_spans: int) -> dict[str, float]:
    """Span and example exact match over ``rows`` [N, 2, L], overall and for each number of spans k."""
    from masklab.objectives.masksearch import span_hits

    hits, spans = [], []
    with torch.no_grad():
        objective.eval()
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64]
            h, s = span_hits(objective.predict(batch), batch[:, 1], objective.slot, max_spans)
            hits.append(h)
            spans.append(s)
    hits, spans = torch.cat(hits), torch.cat(spans)
    full = hits.sum(1) == spans
    out = {"span_em": float(hits.sum() / spans.sum()), "example_em": float(full.float().mean())}
    for k in range(1, max_spans + 1):
        at = spans == k
        out[f"span_em_k{k}"] = float(hits[at].sum() / (k * at.sum()))
        out[f"example_em_k{k}"] = float(full[at].float().mean())
    return out


def in_passage(recipe, retrieval: str, max_spans: int) -> dict[str, float]:
    """Share of answers found verbatim in the kept part of the row's passage, overall and per k."""
    tok = recipe.build_tokenizer()
    examples = recipe.examples(tok, "valid")
    rows = recipe.rows(tok, "valid", retrieval)
    out, every = {}, []
    for k in range(1, max_spans + 1):
        seen = []
        for e, row in zip(examples, rows, strict=True):
            if len(e.answers) == k:
                sep = int((row[0] == tok.eos_token_id).nonzero()[0])  # [bos] passage [eos] docstring
                kept = tok.decode(row[0, 1:sep])
                seen += [a in kept for a in e.answers]
        out[f"k{k}"] = statistics.fmean(seen)
        every += seen
    out["all"] = statistics.fmean(every)
    return out


def score(arm: str, seed: int, args) -> dict[str, dict[str, float]]:
    from masklab.train.loop import trained

    out = Path(args.out) / f"{arm}-seed{seed}"
    cache = out / "scores.json"
    if cache.exists():
        return json.loads(cache.read_text())
    recipe = recipe_for(arm, seed, args)
    trained(recipe, out)
    objective = recipe.build().objective
    objective.load_model(out / "model")
    tok = recipe.build_tokenizer()
    scores = {p: by_k(objective, recipe.rows(tok, "valid", p), recipe.max_spans) for p in SCORED[arm]}
    cache.write_text(json.dumps(scores))
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--override", nargs="*", default=[], help="key=value overrides for every run")
    ap.add_argument("--out", default="runs/masksearch_bench")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {arm: {seed: score(arm, seed, args) for seed in args.seeds} for arm in ARMS}
    recipe = recipe_for("bm25", args.seeds[0], args)
    ks = range(1, recipe.max_spans + 1)
    print(f"masksearch-mini, {args.steps} steps, seeds {args.seeds}; held-out: {recipe.valid_per_k} examples per k")
    metrics = ["span_em", *[f"span_em_k{k}" for k in ks], "example_em", *[f"example_em_k{k}" for k in ks]]
    print(f"{'trained / scored':<26} " + " ".join(f"{m:>16}" for m in metrics))
    for arm in ARMS:
        for scored in SCORED[arm]:
            cells = [mean_ci_text([results[arm][s][scored][m] for s in args.seeds]) for m in metrics]
            print(f"{arm + ' / ' + scored:<26} " + " ".join(f"{c:>16}" for c in cells))
    for m in metrics:
        diff = [results["bm25"][s]["bm25"][m] - results["none"][s]["none"][m] for s in args.seeds]
        print(f"paired (bm25 / bm25) - (none / none), {m}: {mean_ci_text(diff)}")
    for retrieval in ("bm25", "bm25-other-files"):
        share = in_passage(recipe, retrieval, recipe.max_spans)
        print(f"answers in the kept passage, {retrieval}: " + ", ".join(f"{k} {v:.3f}" for k, v in share.items()))


if __name__ == "__main__":
    main()
