"""2:4 semi-structured sparse matmul vs dense on CUDA (``torch.sparse.to_sparse_semi_structured``).

    PYTHONPATH=src python3 benchmarks/gpu_sparsity.py [--cutlass]     # < 60 s on one H100

For Linear shapes of MiniLM-L6 and larger LLM-like shapes, prunes a random fp16 weight to 2:4 with
``masklab.sparsity.nm_mask``, converts it with ``masklab.sparsity.export_semi_structured`` and times
``F.linear(x, W)`` dense vs sparse with CUDA events (median of repeats). Also checks the sparse result matches
the dense result of the masked weight. Prints one line per shape and the speed ratio dense/sparse.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from masklab.sparsity import export_semi_structured, nm_mask
from masklab.sparsity.apply import semi_structured_support

SHAPES = [  # (tokens, in, out)
    (4096, 384, 384),  # MiniLM attention projection
    (4096, 384, 1536),  # MiniLM FFN in
    (4096, 1536, 384),  # MiniLM FFN out
    (8192, 4096, 4096),  # 7B-class attention projection
    (8192, 4096, 11008),  # 7B-class FFN in
    (8192, 11008, 4096),  # 7B-class FFN out
]


def bench(fn, repeats=50, warmup=10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutlass", action="store_true", help="force CUTLASS kernels instead of cuSPARSELt")
    args = ap.parse_args(argv)
    if args.cutlass:
        torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = True
    reason = semi_structured_support(torch.float16)
    if reason is not None:
        print(reason)
        return 0
    t0 = time.time()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cutlass={args.cutlass}")
    print(f"{'tokens x in -> out':>24}  {'dense ms':>9}  {'2:4 ms':>9}  {'speed-up':>8}  max|diff|")
    g = torch.Generator(device="cuda").manual_seed(0)
    for tokens, d_in, d_out in SHAPES:
        lin = nn.Linear(d_in, d_out, bias=False, device="cuda", dtype=torch.float16)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(d_out, d_in, generator=g, device="cuda", dtype=torch.float16))
            lin.weight.mul_(nm_mask(lin.weight, 2, 4).to(lin.weight.dtype))
        x = torch.randn(tokens, d_in, generator=g, device="cuda", dtype=torch.float16)
        w_dense = lin.weight.detach().clone()
        with torch.no_grad():
            ref = F.linear(x, w_dense)
            t_dense = bench(lambda: F.linear(x, w_dense))  # noqa: B023
            status = export_semi_structured(nn.Sequential(lin), ["0"])["0"]
            if status != "ok":
                print(f"{tokens:>6} x {d_in:>5} -> {d_out:>5}  {t_dense:9.3f}  {status}")
                continue
            out = lin(x)
            t_sparse = bench(lambda: lin(x))  # noqa: B023
        diff = (out.float() - ref.float()).abs().max().item()
        print(
            f"{tokens:>6} x {d_in:>5} -> {d_out:>5}  {t_dense:9.3f}  {t_sparse:9.3f}  "
            f"{t_dense / t_sparse:7.2f}x  {diff:.3g}"
        )
    print(f"total {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
