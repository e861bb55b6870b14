"""ADJUST (approximate joint sampling, Bansal & Sanghavi 2025) against marginal parallel decoding at the same number
of tokens per full forward, and against exact one-token-per-forward decoding, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adjust.py [--parts hmm text] [--out runs/adjust-bench] \\
        [--mdm runs/mdm-g --ar runs/ar-g] [--sequences 4000] [--rows 64] [--order low_confidence] \\
        [--states trajectory] [--hmm-order random]

Part ``hmm``: the exact HMM of recipe ``adjust-hmm`` (16 states, 16 symbols, Dirichlet 0.1, 16 positions) is the
frozen model; its denoiser gives exact conditionals and ``log_prob`` the exact likelihood. One head (recipe
``adjust-hmm``, k = 8) is trained through the loop into OUT/hmm (reused when present), then ``--sequences``
unconditional sequences are drawn per arm (row r from seed r) and scored by their true NLL (nats per sequence;
mean and 95% t interval): exact (k = 1), and at k = 2, 4, 8 tokens per full forward marginal parallel decoding
(``confidence``, ``remasking="random"``, ceil(16 / k) steps) and ADJUST (the same forwards, the later tokens of
each step from the head). ``--hmm-order low_confidence``: the head (OUT/hmm-low_confidence) is trained on the
HMM's own one-token-per-forward top-confidence decodings and every arm decodes in top-confidence order; exact
decoding in that order is not a sample of the HMM's joint, so exact decoding in a random order (which is) is
printed first as the reference point.

Part ``text``: the frozen model is a trained ``mdm-tiny`` run (bytes, stdlib code, 128 positions):

    masklab train --recipe mdm-tiny --out runs/mdm-g steps=200 max_minutes=0
    masklab train --recipe ar --out runs/ar-g steps=150 max_minutes=0

A head (recipe ``adjust``, base = the MDM, k = 4) is trained (reused when present) in the reveal order ``--order``
on the states ``--states``: ``low_confidence`` (default, the paper's top-confidence unmasking) or ``random``; and
``trajectory`` (default, the paper's: the MDM's own one-token-per-forward decodings of 256 training windows in
that order) or ``data`` (the data windows with random subsets revealed). Folders: OUT/text for random order on
data states (the earlier setting), else OUT/text-ORDER with a ``-data`` suffix for data states. ``--rows``
held-out windows keep their first 32 bytes; the other 96 are filled at temperature 1 (row r from seed r) by each
arm at equal full forwards, every arm in the same order: infill match (share of filled bytes equal to the
original), unigram entropy of the filled bytes (bits), gen-PPL of the rows under the ``ar`` run, the per-row
paired difference in match against marginal decoding, and the per-row paired difference in the rows' mean NLL
under the ``ar`` run (nats per byte) against marginal and against exact decoding (mean, 95% t interval). CPU
seconds (one thread) are printed beside: a head pass is not free.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from masklab.compare.report import mean_ci  # noqa: E402
from masklab.sample import generate  # noqa: E402
from masklab.sample.adjust import adjust_generate, load_head  # noqa: E402
from masklab.sample.evaluate import gen_ppl, unigram_entropy  # noqa: E402
from masklab.train.loop import trained  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

HMM_HEAD = ["lr=3e-3"]  # recipe adjust-hmm's defaults otherwise: k = 8, 1500 steps of 64 sequences
TEXT_HEAD = ["k=4", "steps=600", "lr=5e-4", "eval_every=200", "ckpt_every=0"]


def text_run(order: str, states: str) -> tuple[list[str], str]:
    """(recipe overrides, folder under OUT) of the text head for a reveal order and a source of states; random
    order on data states is the earlier setting, kept in OUT/text."""
    folder = (
        "text" if (order, states) == ("random", "data") else f"text-{order}" + ("-data" if states == "data" else "")
    )
    return [f"remasking={order}", f"states={states}"], folder


def run_folder(recipe: str, out: Path, overrides: list[str]) -> Path:
    """``out``, holding ``recipe`` with ``overrides`` trained (or reused: :func:`masklab.train.loop.trained`)."""
    fresh, began = not (out / "summary.json").is_file(), time.process_time()
    summary = trained(apply_overrides(get_recipe(recipe), overrides), out)
    if fresh:
        print(f"trained {recipe} into {out}: {time.process_time() - began:.0f} CPU s, held-out {summary['eval']}")
    return out


def arms(k: int, n: int) -> dict:
    """The three decoders at ``k`` tokens per full forward for ``n`` masks: name -> (adjust k or None, steps)."""
    return {"exact": (1, None), f"marginal k={k}": (None, math.ceil(n / k)), f"ADJUST k={k}": (k, None)}


def decode(model, x, mask_id, head, k, steps, order="random", **kw):
    """(ids, full forwards, head passes, CPU s): ADJUST when ``k`` is set, else marginal ``confidence`` decoding,
    both in the reveal order ``order``."""
    began = time.process_time()
    seeds = list(range(x.shape[0]))
    if k is None:
        g = generate(model, x, mask_id=mask_id, sampler="confidence", remasking=order, steps=steps, seed=seeds,
                     return_order=True, **kw)  # fmt: skip
        return g.ids, g.nfe, 0, time.process_time() - began
    g = adjust_generate(model, x, head=head, k=k, mask_id=mask_id, seed=seeds, return_order=True, remasking=order,
                        **kw)  # fmt: skip
    return g.ids, g.nfe, g.stats["head_passes"], time.process_time() - began


def hmm_run(order: str) -> tuple[list[str], str]:
    """(recipe overrides, folder under OUT) of the HMM head for a reveal order: random order on data states (the
    earlier setting, OUT/hmm), top-confidence order on the HMM's own trajectories in that order (OUT/hmm-ORDER)."""
    if order == "random":
        return HMM_HEAD, "hmm"
    return [*HMM_HEAD, f"remasking={order}", "states=trajectory"], f"hmm-{order}"


def part_hmm(args) -> None:
    overrides, folder = hmm_run(args.hmm_order)
    run = run_folder("adjust-hmm", args.out / folder, overrides)
    recipe = get_recipe("adjust-hmm")
    hmm, head, L = recipe.hmm, load_head(run), recipe.length
    x = torch.full((args.sequences, L), hmm.mask_id)
    print(f"\nexact HMM ({recipe.base_name}), L = {L}, {args.sequences} sequences per arm, order {args.hmm_order}, "
          "true NLL in nats per sequence (mean +- 95% CI):")  # fmt: skip
    named = [("exact", 1, None, args.hmm_order)]
    if args.hmm_order != "random":  # the reference: one token per forward in a random order samples the joint
        named.insert(0, ("exact (random)", 1, None, "random"))
    for k in (2, 4, 8):
        named += [(f"{name} k={k}", ak, steps, args.hmm_order) for name, ak, steps in
                  (("marginal", None, math.ceil(L / k)), ("ADJUST", k, None))]  # fmt: skip
    for name, ak, steps, order in named:
        ids, nfe, passes, sec = decode(hmm, x, hmm.mask_id, head, ak, steps, order)
        m, h = mean_ci((-hmm.log_prob(ids)).tolist())
        print(f"  {name:<14} full forwards {nfe:3d}  head passes {passes:3d}  NLL {m:7.3f} +- {h:5.3f}  "
              f"CPU {sec:5.2f} s", flush=True)  # fmt: skip


def part_text(args) -> None:
    from approx_cache import held_out, load  # the same byte model and held-out windows

    extra, folder = text_run(args.order, args.states)
    run = run_folder("adjust", args.out / folder, [f"base={args.mdm}", *TEXT_HEAD, *extra])
    mdm, tok = load(args.mdm)
    ar, _ = load(args.ar, causal=True)
    head = load_head(run)
    truth = held_out(args.mdm, tok, args.rows, mdm.config.max_position_embeddings)
    x = truth.clone()
    x[:, args.prompt :] = tok.mask_token_id
    gen = x == tok.mask_token_id
    n = int(gen.sum(1)[0])
    print(f"\nstdlib bytes ({args.mdm}), {args.rows} held-out rows, {n} bytes filled after a {args.prompt}-byte "
          f"prompt, temperature 1, order {args.order}, head trained on {args.states} states:")  # fmt: skip
    match, nll = {}, {}
    for k in (2, 4):
        for name, (ak, steps) in arms(k, n).items():
            if name in match:  # exact: once
                continue
            ids, nfe, passes, sec = decode(mdm, x, tok.mask_token_id, head, ak, steps, args.order)
            match[name] = ((ids == truth) & gen).sum(1) / gen.sum(1)  # (B,)
            nll[name] = torch.tensor([math.log(gen_ppl(ar, ids[r : r + 1])) for r in range(ids.shape[0])])  # (B,)
            m = float(match[name].mean())
            line = (f"  {name:<14} full forwards {nfe:3d}  head passes {passes:3d}  match {m:.3f}  entropy "
                    f"{unigram_entropy(ids[gen]):5.3f}  gen-PPL {gen_ppl(ar, ids):6.2f}  CPU {sec:5.2f} s")  # fmt: skip
            if name.startswith("ADJUST"):
                d, h = mean_ci((match[name] - match[f"marginal k={k}"]).tolist())
                line += f"  match vs marginal {d:+.3f} +- {h:.3f}"
                for ref in (f"marginal k={k}", "exact"):  # per-row AR NLL (nats per byte), paired
                    d, h = mean_ci((nll[name] - nll[ref]).tolist())
                    line += f"  AR NLL vs {ref.split()[0]} {d:+.4f} +- {h:.4f}"
            print(line, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=("hmm", "text"), default=["hmm", "text"])
    p.add_argument("--out", type=Path, default=Path("runs/adjust-bench"), help="where the heads are trained")
    p.add_argument("--mdm", default="runs/mdm-g")
    p.add_argument("--ar", default="runs/ar-g")
    p.add_argument("--sequences", type=int, default=4000)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--order", choices=("low_confidence", "random"), default="low_confidence",
                   help="the text part's reveal order, for the head's training and every arm")  # fmt: skip
    p.add_argument("--hmm-order", choices=("random", "low_confidence"), default="random",
                   help="the hmm part's reveal order; low_confidence trains on the HMM's own trajectories")  # fmt: skip
    p.add_argument(
        "--states",
        choices=("trajectory", "data"),
        default="trajectory",
        help="the text head's training states: the MDM's own decodings (the paper's) or data windows",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    if "hmm" in args.parts:
        part_hmm(args)
    if "text" in args.parts:
        part_text(args)


if __name__ == "__main__":
    main()
