"""Sampler overhead: generate time / (NFE x forward time), for every registered sampler at B = 1 and B = 8.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampler_overhead.py [--mdm RUN] [--length 256] [--repeats 3]

The anchor is the model itself: a sampler can cost no less than its NFE model calls, so the ratio

    overhead = CPU time of the whole ``generate`` call / CPU time spent inside its model calls

is 1.0 for a sampler whose own work (draws, scores, commits, keyed uniforms) is free. The model calls are timed
inside the same ``generate`` call (a wrapper around the model), so a change in the machine's load between two
measurements cannot move the ratio; a second column divides by NFE x the median of separately timed forward passes
at the same [B, L] shape, taken right before, for comparison. CPU time (``time.process_time``, one thread), not wall
time: the shared machine's load moves wall time several-fold.

The model is ``--mdm`` (a masked LM run folder) or, by default, an untrained ModernBERT of the ``mdm-tiny`` shape
(1.4M parameters, bytes): the model's weights do not change its cost. Each row reports the median of ``--repeats``
runs. ``ancestral`` and ``remdm`` run L time steps (their model calls are cached when nothing changed, so NFE < L),
``mask_predict`` L/8 iterations, the others their defaults (one token per call, or as many as the threshold allows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from masklab.sample import SAMPLER, generate  # noqa: E402
from masklab.sample.generate import as_model_fn  # noqa: E402


class Timed:
    """The model, with the CPU seconds spent inside its calls added up (a plain callable ids -> logits)."""

    def __init__(self, model):
        self.fn, self.seconds, self.calls = as_model_fn(model), 0.0, 0

    def __call__(self, x):
        began = time.process_time()
        out = self.fn(x)
        self.seconds += time.process_time() - began
        self.calls += 1
        return out


def model_and_mask(args):
    if args.mdm:
        from masklab.train import checkpoint

        loaded = checkpoint.load(args.mdm)
        return loaded.model.eval(), loaded.tokenizer.mask_token_id
    from masklab.data.tokenizers import byte_tokenizer, token_info
    from masklab.models import build_model

    tok = byte_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("modernbert", "tiny", token_info(tok), args.length)
    return model.eval(), tok.mask_token_id


def options(name: str, L: int) -> dict:
    if name in ("ancestral", "remdm"):
        return {"steps": L}
    if name == "mask_predict":
        return {"steps": max(L // 8, 1)}
    return {}


def forward_seconds(model, x, repeats: int = 5) -> float:
    fn = as_model_fn(model)
    times = []
    for _ in range(repeats):
        began = time.process_time()
        fn(x)
        times.append(time.process_time() - began)
    return statistics.median(times)


def one(model, x, mask_id, name, L):
    timed = Timed(model)
    began = time.process_time()
    g = generate(timed, x, mask_id=mask_id, sampler=name, seed=list(range(x.shape[0])), return_order=True,
                 **options(name, L))  # fmt: skip
    total = time.process_time() - began
    assert g.nfe == timed.calls, (name, g.nfe, timed.calls)
    return total, timed.seconds, g.nfe


# ---------------------------------------------------------------- bare reference loops (``--bare``): the anchor
@torch.no_grad()
def bare_confidence(fn, x, mask_id, seed: int = 0):
    """LLaDA's loop (ML-GSAI/LLaDA ``generate.py``, as Fast-dLLM's ``llada/generate.py``), ``low_confidence``, one
    token per step, temperature 1: a float64 Gumbel-max draw at every position, the drawn token's probability as its
    score, the best masked position of each row revealed. Returns (ids, NFE)."""
    x, gen = x.clone(), torch.Generator().manual_seed(seed)
    rows = torch.arange(x.shape[0])
    nfe = 0
    for _ in range(int((x == mask_id).sum(1).max())):
        mask = x == mask_id  # (B, L)
        logits = fn(x).double()  # (B, L, V)
        nfe += 1
        noise = torch.rand(logits.shape, generator=gen, dtype=torch.float64)
        x0 = (logits.exp() / -noise.log()).argmax(-1)  # (B, L) Gumbel-max, as the reference writes it
        score = logits.softmax(-1).gather(-1, x0[..., None])[..., 0]  # (B, L) probability of the drawn token
        pick = torch.where(mask, score, -torch.inf).argmax(1)  # (B,)
        x[rows, pick] = torch.where(mask[rows, pick], x0[rows, pick], x[rows, pick])
    return x, nfe


@torch.no_grad()
def bare_ancestral(fn, x, mask_id, steps: int, seed: int = 0):
    """MDLM's ``_ddpm_caching_update`` loop (kuleshov-group/mdlm ``diffusion.py``), linear schedule: from t to s each
    masked position draws from p_theta * (t - s) / t, staying masked w.p. s / t, by Gumbel-max over (B, L, V); the
    model output is reused while nothing changed. Returns (ids, NFE)."""
    x, gen = x.clone(), torch.Generator().manual_seed(seed)
    p_x0, nfe = None, 0
    for i in range(steps):
        t, s = 1 - i / steps, 1 - (i + 1) / steps
        if p_x0 is None:
            logits = fn(x).double()  # (B, L, V)
            logits[..., mask_id] = -torch.inf
            p_x0 = logits.softmax(-1)
            nfe += 1
        q = p_x0 * ((t - s) / t)
        q[..., mask_id] = s / t  # the move-chance slot: stay masked
        noise = torch.rand(q.shape, generator=gen, dtype=torch.float64)
        new = torch.where(x == mask_id, (q / -noise.log()).argmax(-1), x)  # (B, L)
        if not torch.equal(new, x):
            p_x0 = None
        x = new
    return x, nfe


def bare(model, mask_id, args) -> None:
    """masklab's ``confidence`` and ``ancestral`` against the bare reference loops. Both loops call the same timed
    model, so each one's own work per call (CPU time outside the model) is measured apart from the model's; the
    ratio puts both on the same model time m (the median over both loops' calls): (m + own masklab) / (m + own
    bare), so a change in the machine's load between the loops moves m, not the comparison."""
    L = args.length
    print(f"\nagainst bare reference loops (CPU ms per model call, median of {args.repeats} interleaved runs):")
    for B in args.batches:
        x = torch.full((B, L), mask_id)
        x[:, : args.prompt] = 65
        for name, anchor, kw in (("confidence", bare_confidence, {}), ("ancestral", bare_ancestral, {"steps": L})):
            own = {"masklab": [], "bare": []}
            model_ms = []
            for _ in range(args.repeats):  # interleaved: the machine's load falls on both alike
                for arm in own:
                    timed = Timed(model)
                    began = time.process_time()
                    if arm == "masklab":
                        generate(timed, x, mask_id=mask_id, sampler=name, seed=list(range(B)), **kw)
                    else:
                        anchor(timed, x, mask_id, *kw.values())
                    total = time.process_time() - began
                    own[arm].append((total - timed.seconds) / timed.calls * 1e3)
                    model_ms.append(timed.seconds / timed.calls * 1e3)
            m, a, b = statistics.median(model_ms), statistics.median(own["masklab"]), statistics.median(own["bare"])
            print(f"  B = {B} {name:<11} model {m:6.1f} ms/call; own work: masklab {a:5.2f} ms/call, bare loop "
                  f"{b:5.2f} ms/call; ratio at equal model time {(m + a) / (m + b):5.3f}", flush=True)  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mdm", default=None, help="a masked LM run (default: an untrained mdm-tiny-shaped ModernBERT)")
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--prompt", type=int, default=8, help="prompt tokens before the masks")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bare", action="store_true", help="only masklab against the bare reference loops")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, mask_id = model_and_mask(args)
    if args.bare:
        return bare(model, mask_id, args)
    L = args.length
    print(
        f"sampler overhead: CPU time of generate / CPU time inside its model calls; L = {L}, "
        f"{L - args.prompt} masks after a {args.prompt}-token prompt, median of {args.repeats} runs, 1 thread"
    )
    worst = 0.0
    for B in args.batches:
        x = torch.full((B, L), mask_id)
        x[:, : args.prompt] = 65  # "A"
        fwd = forward_seconds(model, x)
        print(f"B = {B}: one forward at [{B}, {L}] = {fwd * 1e3:.1f} ms CPU (median of 5)")
        for name in SAMPLER.names():
            runs = [one(model, x, mask_id, name, L) for _ in range(args.repeats)]
            inside = statistics.median(t / m for t, m, _ in runs)
            separate = statistics.median(t / (n * fwd) for t, _, n in runs)
            nfe = runs[0][2]
            worst = max(worst, inside)
            print(
                f"  {name:<13} NFE {nfe:4d}  generate {statistics.median(t for t, _, _ in runs):6.2f} s  "
                f"overhead {inside:5.3f} (vs NFE x separate forward: {separate:5.3f})",
                flush=True,
            )
    print(f"largest overhead: {worst:.3f} ({'within' if worst <= 1.1 else 'ABOVE'} the 1.1 target)")


if __name__ == "__main__":
    main()
