"""CPU inference: FlexAttention + BlockMask (masklab.attention) vs dense SDPA with the same mask.

Anchor: ``F.scaled_dot_product_attention(q, k, v, attn_mask=dense_bool)``, the mask built by ``to_dense``. masklab:
``attention(q, k, v, mask_fn, backend="flex")`` (compiled FlexAttention, BlockMask from the shape cache). Both run in
this process on the same q, k, v; the ratio is anchor time / masklab time (median of --repeat calls after one warm-up;
the first Flex call per shape compiles, ~20-40 s, and is not timed). Also printed: the BlockMask build time (eager
``create_block_mask``), its sparsity, the dense mask build time, the max abs difference between the two outputs, and the
BlockMask cache hit rate over the run (each timed call looks its BlockMask up by mask and shape, as a model would once
per layer and step).

    .venv/bin/python benchmarks/attention.py                 # L = 1k, 2k, 4k, 8k; about 10 min on 2 cores
    .venv/bin/python benchmarks/attention.py --lengths 1024 2048 --repeat 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from masklab.attention import mods  # noqa: E402
from masklab.attention.compile import attention, default_cache, to_block_mask, to_dense  # noqa: E402


def doc_lengths(total: int, n_docs: int, seed: int = 0) -> list[int]:
    """``n_docs`` document lengths summing to ``total`` (uneven, as packed pretraining batches are)."""
    g = torch.Generator().manual_seed(seed)
    cuts = torch.randperm(total - 1, generator=g)[: n_docs - 1].add(1).sort().values.tolist()
    edges = [0, *cuts, total]
    return [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (compiles Flex for this shape)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--window", type=int, default=256, help="sliding window width")
    p.add_argument("--docs", type=int, default=8, help="documents per packed sequence")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    torch._dynamo.config.cache_size_limit = 64  # one compiled Flex kernel per (mask, length)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B=1 H={args.heads} D={args.dim}, fp32")
    rows = []
    with torch.no_grad():
        for L in args.lengths:
            g = torch.Generator().manual_seed(L)
            q, k, v = (torch.randn(1, args.heads, L, args.dim, generator=g) for _ in range(3))
            for label, fn in (
                (f"sliding_window:{args.window}", mods.sliding_window(args.window)),
                (f"causal document x{args.docs}", mods.document(doc_lengths(L, args.docs), causal=True)),
            ):
                t0 = time.perf_counter()
                dense = to_dense(fn, L, L)
                t_dense_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                bm = to_block_mask(fn, L, L, cache=None)
                t_bm_build = time.perf_counter() - t0
                t_sdpa = timed(
                    lambda dense=dense, q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                    args.repeat,
                )
                t_flex = timed(lambda fn=fn, q=q, k=k, v=v: attention(q, k, v, fn, backend="flex"), args.repeat)
                err = (
                    (attention(q, k, v, fn, backend="flex") - F.scaled_dot_product_attention(q, k, v, attn_mask=dense))
                    .abs()
                    .max()
                    .item()
                )
                row = dict(
                    L=L,
                    mask=label,
                    sdpa_ms=t_sdpa * 1e3,
                    flex_ms=t_flex * 1e3,
                    ratio=t_sdpa / t_flex,
                    bm_build_ms=t_bm_build * 1e3,
                    dense_build_ms=t_dense_build * 1e3,
                    sparsity=bm.sparsity(),
                    max_err=err,
                )
                rows.append(row)
                print(
                    f"  L={L:5d} {label:<24} sdpa {row['sdpa_ms']:9.1f} ms  flex {row['flex_ms']:8.1f} ms  "
                    f"x{row['ratio']:5.2f}  build {row['bm_build_ms']:7.1f} ms  "
                    f"sparsity {row['sparsity']:5.1f}%  "
                    f"err {err:.1e}",
                    flush=True,
                )
    s = default_cache.stats
    print()
    print(
        "| L | mask | dense SDPA ms | Flex+BlockMask ms | speed-up | BlockMask build ms "
        "| dense mask build ms "
        "| block sparsity % | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['L']} | {r['mask']} | {r['sdpa_ms']:.1f} | {r['flex_ms']:.1f} | {r['ratio']:.2f}x | "
            f"{r['bm_build_ms']:.1f} | {r['dense_build_ms']:.1f} | {r['sparsity']:.1f} | {r['max_err']:.1e} |"
        )
    print(
        f"\nBlockMask cache: {s.hits} hits, {s.misses} misses, hit rate {s.hit_rate:.1%}, "
        f"{s.build_seconds:.2f} s building"
    )
    return rows


if __name__ == "__main__":
    main()
