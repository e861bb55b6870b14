"""Fast-dLLM's approximate caches (prefix, dual) against no cache, on one trained bidirectional MDM, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/approx_cache.py --mdm runs/mdm-g --ar runs/ar-g \\
        [--batch 32] [--prompt 32] [--block 32] [--repeats 3]

The two models (byte tokens, stdlib code, 128 positions):

    masklab train --recipe mdm-tiny --out runs/mdm-g steps=200 max_minutes=0
    masklab train --recipe ar --out runs/ar-g steps=150 max_minutes=0

Held-out windows of the MDM's corpus keep their first ``--prompt`` tokens; the rest are masked and filled block by
block (blocks of ``--block`` at fixed places) by :func:`masklab.sample.approx_cache.cached_generate`, greedily by
default (``--temperature 0``, as Fast-dLLM evaluates; at 1 row r draws from seed r, the same for every cache), with
the ``confidence`` sampler (one token per step) and with ``threshold`` (Fast-dLLM's parallel decoding, 0.9), or
``--samplers fhs`` (exact ancestral sampling, one token per call; use it with ``--temperature 1``). Each row of the
table: CPU seconds (median of ``--repeats`` runs, the three caches interleaved so a change in the shared machine's
load falls on all of them; one thread), NFE, infill match (share of filled tokens equal to the original text), unigram
entropy of the filled tokens (bits) and gen-PPL of the whole rows under the ``ar`` model; then the paired difference
in match against no cache (mean over rows, 95% CI).

The departure of the cache from the exact logits is measured on the same rows and trajectories: every cached step
is also run uncached (``departure=``), and the table gives the largest |logit difference| and the KL divergence
(nats) of the cached from the uncached distribution at the block's masked positions, mean and largest over steps.
The exact HMM denoiser (masklab.data.synthetic) has no attention, hence no keys and values to cache: the departure
is measured on the trained MDM instead.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from masklab.sample.approx_cache import CACHES, cached_generate  # noqa: E402
from masklab.sample.evaluate import gen_ppl, unigram_entropy  # noqa: E402

SAMPLERS = {"confidence": {}, "threshold": {"threshold": 0.9}, "fhs": {}}  # each one's options


def load(path, causal=False):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from masklab.train import checkpoint

    folder = checkpoint.resolve(path)
    cls = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    return cls.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def held_out(path, tok, batch: int, length: int) -> torch.Tensor:
    """``batch`` held-out windows [B, length] of the MDM's corpus, spread evenly over its valid split."""
    from masklab.data.text import text_task_data
    from masklab.train import checkpoint

    recipe = checkpoint.read_manifest(checkpoint.resolve(path))["recipe"]
    data = text_task_data(recipe["data"], recipe["tokenizer"], length)
    if data.tokenizer.get_vocab() != tok.get_vocab():
        raise ValueError(f"{path}: the rebuilt tokenizer differs from the checkpoint's")
    return data.valid[torch.linspace(0, len(data.valid) - 1, batch).long()]


def timed(mdm, x, mask_id, cache, block, sampler, temperature, departure=None):
    """(ids [B, L], NFE, CPU seconds) of one cached_generate call (row r draws from seed r)."""
    began = time.process_time()
    g = cached_generate(mdm, x, mask_id=mask_id, block_length=block, cache=cache, sampler=sampler,
                        temperature=temperature, seed=list(range(x.shape[0])), return_order=True, departure=departure,
                        **SAMPLERS[sampler])  # fmt: skip
    return g.ids, g.nfe, time.process_time() - began


def paired_ci(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean and 95% half-width (normal) of the per-row difference a - b."""
    d = (a - b).double()
    return float(d.mean()), 1.96 * float(d.std()) / math.sqrt(len(d)) if len(d) > 1 else float("nan")


def speed_and_quality(mdm, ar, truth, x, mask_id, pad_id, args) -> None:
    gen = x == mask_id  # (B, L) the filled positions
    for sampler in args.samplers:
        print(f"\n{sampler} (temperature {args.temperature:g}), {int(gen.sum(1)[0])} masks per row after a "
              f"{args.prompt}-token prompt, blocks of {args.block}, {x.shape[0]} rows:")  # fmt: skip
        cpu = {c: [] for c in CACHES}
        out = {}
        for _ in range(args.repeats):
            for cache in CACHES:  # interleaved: the machine's load falls on every cache alike
                ids, nfe, sec = timed(mdm, x, mask_id, cache, args.block, sampler, args.temperature)
                cpu[cache].append(sec)
                out[cache] = (ids, nfe)
        base = statistics.median(cpu["none"])
        match = {c: (out[c][0] == truth).logical_and(gen).sum(1) / gen.sum(1) for c in CACHES}  # (B,) per row
        for cache in CACHES:
            ids, nfe = out[cache]
            t = statistics.median(cpu[cache])
            diff, half = paired_ci(match[cache], match["none"])
            same = float((ids == out["none"][0]).all(1).double().mean())
            m = float(match[cache].mean())
            print(f"  {cache:<6} CPU {t:6.2f} s (x{base / t:4.2f})  NFE {nfe:4d}  match {m:.3f} "
                  f"(vs none {diff:+.3f} +- {half:.3f})  entropy {unigram_entropy(ids[gen]):5.3f}  "
                  f"gen-PPL {gen_ppl(ar, ids, ignore_ids=(pad_id,)):6.2f}  rows equal to none {same:.2f}",
                  flush=True)  # fmt: skip


def departure(mdm, x, mask_id, args) -> None:
    rows = x[: args.departure_rows]
    print(f"\ndeparture of the cached logits from the uncached ones ({len(rows)} rows, confidence, "
          f"temperature {args.temperature:g}):")  # fmt: skip
    for cache in ("prefix", "dual"):
        rec: list = []
        timed(mdm, rows, mask_id, cache, args.block, "confidence", args.temperature, departure=rec)
        worst = max(d for d, _ in rec)
        kl = [k for _, k in rec]
        print(f"  {cache:<6} {len(rec)} cached steps  max |logit diff| {worst:.3f}  KL per step mean "
              f"{statistics.mean(kl):.2e} nats, median {statistics.median(kl):.2e}, max {max(kl):.2e}",
              flush=True)  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mdm", required=True, help="a masked LM run with every layer global (ModernBERT)")
    p.add_argument("--ar", required=True, help="an ar run on the same corpus and tokenizer (gen-PPL)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--prompt", type=int, default=32, help="tokens kept at the start of every window")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--departure-rows", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy, as Fast-dLLM evaluates")
    p.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=["confidence", "threshold"])
    args = p.parse_args()
    torch.set_num_threads(1)
    mdm, tok = load(args.mdm)
    ar, _ = load(args.ar, causal=True)
    length = mdm.config.max_position_embeddings
    truth = held_out(args.mdm, tok, args.batch, length)
    x = truth.clone()
    x[:, args.prompt :] = tok.mask_token_id
    print(f"approximate caches: {args.mdm} ({mdm.config.num_hidden_layers} layers), L = {length}, 1 thread")
    speed_and_quality(mdm, ar, truth, x, tok.mask_token_id, tok.pad_token_id, args)
    departure(mdm, x, tok.mask_token_id, args)


if __name__ == "__main__":
    main()
