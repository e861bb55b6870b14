"""CUDA: FlexAttention + BlockMask (masklab.attention) vs dense SDPA with the same mask, inference and training.

To run on one GPU (budget < 120 s; lengths that would overrun are skipped and reported):

    PYTHONPATH=src python3 benchmarks/gpu_attention.py
    PYTHONPATH=src python3 benchmarks/gpu_attention.py --lengths 1024 2048 4096 8192 16384 --budget 110

Per length and mask (sliding window, causal packed documents): forward time and forward+backward time (a training step
of the attention op, gradients to q, k, v) for dense SDPA with a bool mask from ``to_dense`` (anchor) and for compiled
FlexAttention with the cached BlockMask (masklab), bf16, B=1. Times are CUDA-event medians after a warm-up (the warm-up
compiles Flex; compile time is printed separately). Also: BlockMask build time on GPU, max abs difference of outputs and
of dq, and the BlockMask cache hit rate.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from masklab.attention import mods
from masklab.attention.compile import attention, default_cache, to_block_mask, to_dense


def doc_lengths(total: int, n_docs: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    cuts = torch.randperm(total - 1, generator=g)[: n_docs - 1].add(1).sort().values.tolist()
    edges = [0, *cuts, total]
    return [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]


def cuda_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]  # ms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--budget", type=float, default=110.0, help="seconds; later lengths are skipped past it")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_attention.py needs CUDA")
    torch._dynamo.config.cache_size_limit = 64
    dev = torch.device("cuda")
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, B=1 H={args.heads} D={args.dim}, bf16")
    rows, skipped = [], []
    for L in args.lengths:
        if time.perf_counter() - t_start > args.budget:
            skipped.append(L)
            continue
        g = torch.Generator(device=dev).manual_seed(L)
        q, k, v = (
            torch.randn(1, args.heads, L, args.dim, generator=g, device=dev, dtype=torch.bfloat16) for _ in range(3)
        )
        do = torch.randn_like(q)
        for label, fn in (
            (f"sliding_window:{args.window}", mods.sliding_window(args.window)),
            (f"causal document x{args.docs}", mods.document(doc_lengths(L, args.docs), causal=True)),
        ):
            try:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                bm = to_block_mask(fn, L, L, device=dev, cache=None)
                torch.cuda.synchronize()
                build_ms = (time.perf_counter() - t0) * 1e3
                dense = to_dense(fn, L, L, device=dev)

                def sdpa_fwd(dense=dense, q=q, k=k, v=v):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense)

                def flex_fwd(fn=fn, q=q, k=k, v=v):
                    return attention(q, k, v, fn, backend="flex")

                def sdpa_train(dense=dense, q=q, k=k, v=v, do=do):
                    qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
                    F.scaled_dot_product_attention(qq, kk, vv, attn_mask=dense).backward(do)
                    return qq.grad

                def flex_train(fn=fn, q=q, k=k, v=v, do=do):
                    qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
                    attention(qq, kk, vv, fn, backend="flex").backward(do)
                    return qq.grad

                t0 = time.perf_counter()
                with torch.no_grad():
                    flex_fwd()
                flex_train()  # compiles the backward too
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - t0
                with torch.no_grad():
                    sdpa_fwd()
                    fwd_sdpa = cuda_time(sdpa_fwd, args.repeat)
                    fwd_flex = cuda_time(flex_fwd, args.repeat)
                    err = (sdpa_fwd().float() - flex_fwd().float()).abs().max().item()
                sdpa_train()
                train_sdpa = cuda_time(sdpa_train, args.repeat)
                train_flex = cuda_time(flex_train, args.repeat)
                dq_err = (sdpa_train().float() - flex_train().float()).abs().max().item()
                r = dict(
                    L=L,
                    mask=label,
                    fwd_sdpa=fwd_sdpa,
                    fwd_flex=fwd_flex,
                    train_sdpa=train_sdpa,
                    train_flex=train_flex,
                    build_ms=build_ms,
                    compile_s=compile_s,
                    sparsity=bm.sparsity(),
                    err=err,
                    dq_err=dq_err,
                )
                rows.append(r)
                print(
                    f"  L={L} {label}: fwd {fwd_sdpa:.2f} vs {fwd_flex:.2f} ms (x{fwd_sdpa / fwd_flex:.2f}), "
                    f"fwd+bwd {train_sdpa:.2f} vs {train_flex:.2f} ms (x{train_sdpa / train_flex:.2f}), "
                    f"compile {compile_s:.1f} s",
                    flush=True,
                )
            except Exception as e:  # one failing shape must not lose the rest of the table
                print(f"  L={L} {label}: FAILED {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                torch.cuda.empty_cache()
    print()
    print(
        "| L | mask | fwd SDPA ms | fwd Flex ms | fwd speed-up | fwd+bwd SDPA ms | fwd+bwd Flex ms "
        "| train speed-up "
        "| BlockMask build ms | sparsity % | max abs diff out / dq |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['L']} | {r['mask']} | {r['fwd_sdpa']:.2f} | {r['fwd_flex']:.2f} | "
            f"{r['fwd_sdpa'] / r['fwd_flex']:.2f}x | {r['train_sdpa']:.2f} | {r['train_flex']:.2f} | "
            f"{r['train_sdpa'] / r['train_flex']:.2f}x | {r['build_ms']:.1f} | {r['sparsity']:.1f} | "
            f"{r['err']:.1e} / {r['dq_err']:.1e} |"
        )
    s = default_cache.stats
    print(f"\nBlockMask cache: {s.hits} hits, {s.misses} misses, hit rate {s.hit_rate:.1%}")
    print(f"total {time.perf_counter() - t_start:.0f} s" + (f"; skipped lengths {skipped} (budget)" if skipped else ""))


if __name__ == "__main__":
    main()
