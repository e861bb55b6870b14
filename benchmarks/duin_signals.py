"""Du-IN on synthetic word trials: the 10-way linear probe of region-fused tokens (Du-IN) against per-channel tokens
and against no pretraining, over seeds, in one process; prints the accuracies and their paired differences.

    .venv/bin/python benchmarks/duin_signals.py                         # 3 seeds x 2 token kinds x 2 stages
    .venv/bin/python benchmarks/duin_signals.py --steps 20 --seeds 1    # smoke run

For each seed and token kind (``region``: Du-IN's fused channels; ``channel``: one token per channel and segment),
the ``duin-vqvae`` tokenizer trains first, then ``duin-mae`` predicts its codes; the probe is a logistic regression
on the frozen encoder features of 1000 labelled trials, scored on 1000 others
(:func:`masklab.train.recipes.duin.word_probe_of`). ``none`` probes the same encoders untrained (the weights the
runs start from); ``raw`` is the logistic regression on the raw samples. Channel-token encoders are read both
averaged over channels (the features the table compares) and per channel (``*_concat``: 16 times as many).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matmuls: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

from masklab.compare.report import mean_ci_text


def pipeline(tokens: str, seed: int, steps: int, over: tuple[str, ...]) -> dict:
    """Tokenizer, then masked code prediction, for one token kind and seed: probe accuracies in percent."""
    import torch

    from masklab.train import checkpoint
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides
    from masklab.train.recipes.duin import word_probe_of

    torch.set_num_threads(1)
    common = [*over, f"tokens={tokens}", f"seed={seed}", f"steps={steps}", "eval_every=0", "ckpt_every=0"]
    out, began = {"tokens": tokens, "seed": seed}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="duin-") as tmp:
        vq = apply_overrides(get_recipe("duin-vqvae"), common)
        summary = train(vq, Path(tmp) / "vq", progress=False)
        out["vq_eval"] = summary["eval"]
        out["vqvae"] = 100 * word_probe_of(Path(tmp) / "vq", vq)
        if tokens == "channel":  # the same encoders read per channel: no averaging over channels
            out["vqvae_concat"] = 100 * word_probe_of(Path(tmp) / "vq", vq, pool="concat")
        mae = apply_overrides(get_recipe("duin-mae"), [*common, f"tokenizer={Path(tmp) / 'vq'}"])
        init = mae.build().objective  # the weights the masked-code run starts from
        checkpoint.save(Path(tmp) / "init", init, recipe={}, step=0)
        out["none"] = 100 * word_probe_of(Path(tmp) / "init", mae)
        if tokens == "channel":
            out["none_concat"] = 100 * word_probe_of(Path(tmp) / "init", mae, pool="concat")
        summary = train(mae, Path(tmp) / "mae", progress=False)
        out["mae_eval"] = summary["eval"]
        out["duin"] = 100 * word_probe_of(Path(tmp) / "mae", mae)
        if tokens == "channel":
            out["duin_concat"] = 100 * word_probe_of(Path(tmp) / "mae", mae, pool="concat")
    out["seconds"] = time.perf_counter() - began
    return out


def raw_probe(over: tuple[str, ...]) -> float:
    from masklab.train.probe import linear_probe
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides
    from masklab.train.recipes.duin import PROBE_SEEDS

    s = apply_overrides(get_recipe("duin-mae"), list(over)).signals
    (xtr, ytr), (xte, yte) = (s.sample(1000, seed) for seed in PROBE_SEEDS)
    return 100 * linear_probe(xtr.flatten(1).numpy(), ytr.numpy(), xte.flatten(1).numpy(), yte.numpy())


def report(results: list[dict], raw: float) -> None:
    for r in sorted(results, key=lambda r: (r["tokens"], r["seed"])):
        print(f"{r['tokens']:7} seed={r['seed']}  none {r['none']:.1f}  vqvae {r['vqvae']:.1f}  duin {r['duin']:.1f}  "
              f"(recon {r['vq_eval']['recon']:.4f}, codes used {r['vq_eval']['codes_used']:.0f}, "
              f"code acc {r['mae_eval']['code_acc']:.3f}, {r['seconds']:.0f} s)")  # fmt: skip
    by = {t: sorted((r for r in results if r["tokens"] == t), key=lambda r: r["seed"]) for t in ("region", "channel")}
    print(f"\nraw samples, logistic regression: {raw:.1f}  (chance 10.0)")
    for t, rs in by.items():
        if rs:
            none, vqvae, duin = (mean_ci_text([r[k] for r in rs], 1) for k in ("none", "vqvae", "duin"))
            print(f"{t:7}  none {none}  vqvae encoder {vqvae}  masked codes {duin}")
    concat = [r for r in by["channel"] if "duin_concat" in r]
    if concat:
        none, vqvae, duin = (mean_ci_text([r[f"{k}_concat"] for r in concat], 1) for k in ("none", "vqvae", "duin"))
        print(
            f"channel tokens read per channel (no averaging): none {none}  vqvae encoder {vqvae}  masked codes {duin}"
        )
    if by["region"] and len(by["region"]) == len(by["channel"]):
        diff = [a["duin"] - b["duin"] for a, b in zip(by["region"], by["channel"], strict=True)]
        print(f"paired region - channel (masked codes): {mean_ci_text(diff, 1)}")
    gain = [r["duin"] - r["none"] for r in by["region"]]
    if gain:
        print(f"paired region masked codes - untrained region encoder: {mean_ci_text(gain, 1)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="steps of each stage")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tokens", default="region,channel", help="token kinds to run, comma-separated")
    ap.add_argument("--jobs", type=int, default=2, help="pipelines run in parallel processes (one thread each)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for both stages")
    ap.add_argument("--json", help="also write the records to this file")
    args = ap.parse_args()
    jobs = [(t, s) for s in range(args.seeds) for t in args.tokens.split(",")]
    over = tuple(args.set)
    with ProcessPoolExecutor(args.jobs) as pool:
        tokens, seeds = zip(*jobs, strict=True)
        results = list(pool.map(pipeline, tokens, seeds, [args.steps] * len(jobs), [over] * len(jobs)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    report(results, raw_probe(over))


if __name__ == "__main__":
    main()
