"""SEA (masklab.attention.estimated) against dense attention, two parts.

``memory``: one causal attention call, B=1, on random q, k, v, at each length: peak bytes of the tensors allocated
during the call (torch profiler memory events on CPU: a running sum of allocations and frees) and the median time of
--repeat calls. Anchors, in the same process on the same q, k, v: dense attention that forms the (L, L) matrix (what
the teacher and SEA's reference compute), and ``F.scaled_dot_product_attention(is_causal=True)`` (a fused kernel that
never forms it). masklab: ``SEAEstimator.attend`` (estimate, top-k, sparse attention). Ratios: SEA / anchor.

``distill``: a trained ``ar`` run (a Llama). Every layer gets an estimator (``add_estimators``) and the estimators
alone are trained layer by layer: each layer's estimator sees that layer's q, k, v under the dense model (teacher
forcing) and fits that layer's attention matrix with SEA's loss. Reported on held-out windows: next-token
cross-entropy in bits of the dense model, of SEA in every layer (before and after distillation), of SEA in one layer
at a time, and of a causal sliding window keeping as many keys as SEA keeps on average (a budget-matched local mask),
with the paired difference to the dense model and its 95% interval over windows.

    .venv/bin/python benchmarks/sea.py memory [--lengths 512 1024 2048 4096] [--heads 4] [--head-dim 32]
    .venv/bin/python benchmarks/sea.py distill RUN [--steps 300] [--width 32] [--k 8] [--valid 64]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from masklab.attention import hf  # noqa: E402
from masklab.attention import mods as M  # noqa: E402
from masklab.attention.estimated import SEAEstimator, add_estimators  # noqa: E402


def peak_bytes(fn) -> int:
    """Peak of the running sum of CPU allocations minus frees while ``fn`` runs (profiler memory events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    now = peak = 0
    for e in events:
        now += e.nbytes()
        peak = max(peak, now)
    return peak


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dense_causal(q, k, v):
    """The (L, L) matrix formed: softmax(q k^T / sqrt(d) + causal mask) v."""
    L = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    s = s.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def memory(args) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B=1 H={args.heads} D={args.head_dim}, fp32")
    print(f"SEA width T_M={args.width}, k={args.k}, features int(d ln d); times: median of {args.repeat} calls")
    head = "L | W (most keys a query keeps) | dense peak MiB | SDPA peak MiB | SEA peak MiB | SEA/dense memory"
    print(f"| {head} | dense s | SDPA s | SEA s | SEA/dense time | SEA/SDPA time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for L in args.lengths:
        g = torch.Generator().manual_seed(L)
        q, k, v = (torch.randn(1, args.heads, L, args.head_dim, generator=g) for _ in range(3))
        torch.manual_seed(0)
        est = SEAEstimator(args.head_dim, width=args.width, k=args.k, max_len=L).eval()
        runs = {
            "dense": lambda q=q, k=k, v=v: dense_causal(q, k, v),
            "sdpa": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            "sea": lambda q=q, k=k, v=v, est=est: est.attend(q, k, v),
        }
        with torch.no_grad():
            mem = {name: peak_bytes(fn) / 2**20 for name, fn in runs.items()}
            sec = {name: timed(fn, args.repeat) for name, fn in runs.items()}
        W = est.last_keep[0].shape[-1]
        cells = [L, W, *(f"{mem[n]:.1f}" for n in runs), f"{mem['sea'] / mem['dense']:.3f}"]
        cells += [
            *(f"{sec[n]:.4f}" for n in runs),
            f"{sec['sea'] / sec['dense']:.2f}",
            f"{sec['sea'] / sec['sdpa']:.2f}",
        ]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


# --- distillation from a trained ar run --------------------------------------------------------------------------


def load_run(path: str):
    from masklab.data.text import text_task_data
    from masklab.train import checkpoint
    from masklab.train.recipes.base import from_dict

    found = checkpoint.load(path)
    recipe = from_dict(found.manifest["recipe"])
    data = text_task_data(recipe.data, found.tokenizer, recipe.seq_len)
    return found.model.eval(), data.train, data.valid, recipe


def window_bits(model, ids: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Mean next-token cross-entropy in bits of each window ``(N,)``."""
    out = []
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            x = ids[s : s + batch]
            logits = model(x).logits[:, :-1]
            ce = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)
            out.append(ce / math.log(2))
    return torch.cat(out)


def ci(d: torch.Tensor) -> str:
    """Mean of paired differences with a normal 95% interval over windows."""
    half = 1.96 * d.std().item() / math.sqrt(len(d))
    return f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"


def versus(name: str, bits: torch.Tensor, dense: torch.Tensor) -> None:
    print(f"| {name} | {bits.mean():.4f} | {ci(bits - dense)} |")


def distill(args) -> None:
    model, train, valid, recipe = load_run(args.run)
    valid = valid[: args.valid]
    cfg = model.config
    print(
        f"run {Path(args.run).name}: recipe {recipe.name} preset {recipe.preset}, {cfg.num_hidden_layers} layers, "
        f"{cfg.num_attention_heads} heads of {cfg.head_dim}, seq_len {recipe.seq_len}; {len(valid)} held-out windows"
    )
    print(f"SEA width T_M={args.width}, k={args.k}; distillation {args.steps} steps, batch {args.batch}, lr {args.lr}")
    dense = window_bits(model, valid)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(args.seed)
    ests = add_estimators(model, width=args.width, k=args.k, seed=args.seed)
    before = window_bits(model, valid)
    params = [p for e in ests.values() for p in e.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    for e in ests.values():
        e.distilling = True  # dense outputs: each layer's estimator fits its own layer under the teacher's inputs
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = train[torch.randint(len(train), (args.batch,), generator=g)]
        model(x)
        loss = sum(e.last_loss for e in ests.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 6) == 0 or step == 1:
            per_layer = " ".join(f"{e.last_loss.item():.4f}" for e in ests.values())
            print(f"step {step}: estimator loss per layer {per_layer} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for e in ests.values():
        e.distilling = False
    after = window_bits(model, valid)
    kept = statistics.mean(float(e.last_keep[1].sum(-1).float().mean()) for e in ests.values())
    one_layer = {}
    for i in ests:  # SEA in layer i only: the others give their dense output
        for j, other in ests.items():
            other.distilling = j != i
        one_layer[i] = window_bits(model, valid)
    for e in ests.values():
        e.distilling = False
    model.set_attn_implementation("sdpa")
    window = max(1, round(kept))
    hf.use_masks(model, M.sliding_window(window))
    local = window_bits(model, valid)
    hf.clear_masks(model)
    print(f"\nkeys SEA keeps per query (mean: layers, heads, queries of a batch): {kept:.1f} of 1..{recipe.seq_len}")
    print("| attention | held-out bits/token | minus dense, 95% CI over windows |")
    print("|---|---|---|")
    print(f"| dense (teacher) | {dense.mean():.4f} | |")
    versus("SEA, every layer, before distillation", before, dense)
    versus("SEA, every layer, distilled", after, dense)
    for i, b in one_layer.items():
        versus(f"SEA in layer {i} only, distilled", b, dense)
    versus(f"sliding window {window} (same number of keys)", local, dense)
    print(f"\nSEA distilled minus sliding window {window}, 95% CI over windows: {ci(after - local)}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    m = sub.add_parser("memory", help="peak memory and time of one attention call against dense")
    m.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--head-dim", type=int, default=32)
    m.add_argument("--width", type=int, default=128, help="T_M (paper: 128)")
    m.add_argument("--k", type=int, default=7, help="keys per query (paper default 7)")
    m.add_argument("--repeat", type=int, default=3)
    d = sub.add_parser("distill", help="layer-by-layer distillation from a trained ar run")
    d.add_argument("run", help="a masklab ar run folder (masklab train --recipe ar)")
    d.add_argument("--width", type=int, default=32)
    d.add_argument("--k", type=int, default=8)
    d.add_argument("--steps", type=int, default=300)
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--lr", type=float, default=1e-2)
    d.add_argument("--valid", type=int, default=64, help="held-out windows")
    d.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    memory(args) if args.part == "memory" else distill(args)


if __name__ == "__main__":
    main()
