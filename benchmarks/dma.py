"""DMA (masklab.attention.dynamic) against full and sliding-window attention on multi-query associative recall
(MQAR), at equal window, for accuracy, time and memory against the sequence length L.

MQAR (Arora et al., 2023, "Zoology", Sec. 3; the task of DMA's Sec. 4.3): each sequence starts with P key-value
pairs (2P tokens, keys and values from separate vocabularies of 64); then the P keys come back once each, in random
order, at random positions among filler tokens, and at each query the model must output the value stored with the
key. The model is the same for every arm: token embedding, a width-2 causal token mix (``x_i + W x_{i-1}``, the short
convolution of Zoology's and Based's models, so that a value position also carries its key), one causal attention
layer (1 head of 64), a readout. The arms differ only in which keys each query attends to:

* full: every earlier key (``F.scaled_dot_product_attention(is_causal=True)``);
* sliding window: the ``window`` most recent keys (a gather of fixed indices, O(L * window));
* DMA: the top-``window`` earlier keys by the learned importance, with it as a bias (``DynamicMaskAttention``).

Every arm trains with the same batches (keyed by step), Adam, for --steps steps, then is scored on 512 held-out
sequences: accuracy over all queries. Then, per L, one forward of the attention layer alone (B=1, untrained
weights): median time of --repeat calls and the peak bytes allocated during one call (torch profiler memory events).

    .venv/bin/python benchmarks/dma.py [--lengths 64 128 256] [--pairs-per-length 0.125] [--window-per-pairs 1]
                                       [--steps 600] [--timing-lengths 512 1024 2048 4096]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from masklab.attention.dynamic import DynamicMaskAttention, gather_attention  # noqa: E402

N_KEYS = N_VALS = 64
FILLER = N_KEYS + N_VALS  # token ids: keys 0..63, values 64..127, filler 128
VOCAB = FILLER + 1


def mqar_batch(g: torch.Generator, batch: int, length: int, pairs: int):
    """ids ``(batch, length)`` and targets ``(batch, length)`` (-100 except at the queries)."""
    if 2 * pairs + pairs > length:
        raise ValueError(f"{pairs} pairs and their queries do not fit in length {length}")
    keys = torch.stack([torch.randperm(N_KEYS, generator=g)[:pairs] for _ in range(batch)])  # distinct per row
    vals = torch.randint(0, N_VALS, (batch, pairs), generator=g) + N_KEYS
    ids = torch.full((batch, length), FILLER)
    ids[:, 0 : 2 * pairs : 2], ids[:, 1 : 2 * pairs : 2] = keys, vals
    rest = length - 2 * pairs
    slots = torch.stack([torch.randperm(rest, generator=g)[:pairs] for _ in range(batch)]) + 2 * pairs  # (batch, P)
    order = torch.stack([torch.randperm(pairs, generator=g) for _ in range(batch)])  # which key each query asks
    ids.scatter_(1, slots, keys.gather(1, order))
    target = torch.full((batch, length), -100).scatter_(1, slots, vals.gather(1, order))
    return ids, target


class SlidingWindow(nn.Module):
    """Causal sliding-window attention as a gather of the ``window`` most recent keys (same machinery as DMA)."""

    def __init__(self, dim: int, n_heads: int, window: int):
        super().__init__()
        self.n_heads, self.head_dim, self.window = n_heads, dim // n_heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, L, dim = x.shape
        q, k, v = (t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        pos = torch.arange(L).view(L, 1) - torch.arange(min(self.window, L))  # (L, w): i, i-1, ..., i-w+1
        idx, valid = pos.clamp(min=0).expand(B, self.n_heads, L, -1), (pos >= 0).expand(B, self.n_heads, L, -1)
        o, _ = gather_attention(q, k, v, idx, valid)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))


class Full(nn.Module):
    """Causal full attention (a fused kernel that never forms the (L, L) matrix)."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, L, dim = x.shape
        q, k, v = (t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))


class RecallNet(nn.Module):
    def __init__(self, attn: nn.Module, dim: int):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, dim)
        self.mix = nn.Linear(dim, dim, bias=False)  # x_i + W x_{i-1}: a width-2 causal convolution
        self.attn = attn
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, ids):
        x = self.emb(ids)
        x = x + self.mix(F.pad(x[:, :-1], (0, 0, 1, 0)))
        return self.head(x + self.attn(x))  # (B, L, VOCAB)


def make_attn(arm: str, dim: int, window: int) -> nn.Module:
    if arm == "full":
        return Full(dim, 1)
    if arm == "sliding":
        return SlidingWindow(dim, 1, window)
    return DynamicMaskAttention(dim, 1, window)


def train_arm(arm: str, length: int, pairs: int, window: int, args) -> tuple[float, float]:
    torch.manual_seed(args.seed)
    model = RecallNet(make_attn(arm, args.dim, window), args.dim)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    t0 = time.perf_counter()
    for step in range(args.steps):
        ids, target = mqar_batch(torch.Generator().manual_seed(args.seed * 100_003 + step), args.batch, length, pairs)
        loss = F.cross_entropy(model(ids).transpose(1, 2), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    ids, target = mqar_batch(torch.Generator().manual_seed(10**9 + length), 512, length, pairs)
    with torch.no_grad():
        pred = torch.cat([model(ids[s : s + 64]).argmax(-1) for s in range(0, 512, 64)])
    asked = target != -100
    return (pred[asked] == target[asked]).float().mean().item(), seconds


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
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="*", default=[64, 128, 256], help="MQAR lengths (none: timing only)")
    p.add_argument("--pairs-per-length", type=float, default=0.125, help="P = round(L * this)")
    p.add_argument("--window-per-pairs", type=float, default=1.0, help="window = round(P * this), equal for both")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing-lengths", type=int, nargs="*", default=[512, 1024, 2048, 4096], help="none: no timing")
    p.add_argument("--timing-window", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    arms = ("full", "sliding", "dma")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; dim {args.dim}, 1 head, fp32")
    if args.lengths:
        print(f"MQAR accuracy after {args.steps} steps (batch {args.batch}, Adam lr {args.lr}, seed {args.seed})")
        cols = "full acc | sliding acc | DMA acc | full train s | sliding train s | DMA train s"
        print(f"| L | pairs P | window | {cols} |")
        print("|---|---|---|---|---|---|---|---|---|")
    for L in args.lengths:
        pairs = max(1, round(L * args.pairs_per_length))
        window = max(1, round(pairs * args.window_per_pairs))
        res = {arm: train_arm(arm, L, pairs, window, args) for arm in arms}
        accs = " | ".join(f"{res[a][0]:.3f}" for a in arms)
        secs = " | ".join(f"{res[a][1]:.0f}" for a in arms)
        print(f"| {L} | {pairs} | {window} | {accs} | {secs} |", flush=True)
    w = args.timing_window
    if args.timing_lengths:
        print(f"\nOne forward of the attention layer, B=1, window {w}: median of {args.repeat} calls; peak MiB")
        cols = "full s | sliding s | DMA s | DMA/full time | DMA/sliding time | full MiB | sliding MiB | DMA MiB"
        print(f"| L | {cols} |")
        print("|---|---|---|---|---|---|---|---|---|")
    for L in args.timing_lengths:
        torch.manual_seed(0)
        x = torch.randn(1, L, args.dim)
        layers = {arm: make_attn(arm, args.dim, w).eval() for arm in arms}
        with torch.no_grad():
            if isinstance(layers["dma"], DynamicMaskAttention):
                layers["dma"].A.uniform_(-1.0, 1.0)  # a non-flat importance, as after training
            sec = {a: timed(lambda m=layers[a], x=x: m(x), args.repeat) for a in arms}
            mib = {a: peak_bytes(lambda m=layers[a], x=x: m(x)) / 2**20 for a in arms}
        print(
            f"| {L} | {sec['full']:.4f} | {sec['sliding']:.4f} | {sec['dma']:.4f} | {sec['dma'] / sec['full']:.2f} "
            f"| {sec['dma'] / sec['sliding']:.2f} | {mib['full']:.1f} | {mib['sliding']:.1f} | {mib['dma']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
