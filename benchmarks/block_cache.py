"""Block diffusion decoding: the exact KV cache against uncached block decoding, in one process, same seeds.

    .venv/bin/python benchmarks/block_cache.py [--length 1024] [--block 32] [--batch 4] [--model RUN]

Anchor: uncached block decoding (BD3-LM, Arriola et al. 2025, Alg. 2 without the cache), where every denoising step
of block k runs the whole prefix of k + 1 blocks under the block-causal mask. masklab: the same decoding with the keys
and values of final blocks kept (:class:`masklab.sample.cache.KVCache`), so a step runs only the block's tokens and
each block is run once more when it is final. Both decode the same rows with the same sampler and keys; the script
checks that they return the same ids, then prints wall and CPU seconds, model calls and the ratio.

Without ``--model`` the model is an untrained tiny Llama (the bd3-tiny architecture: 8 layers, width 128) with
``--length`` positions, which is all timing needs; ``--model`` takes a trained bd3 run instead (its own length).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from masklab.data.tokenizers import byte_tokenizer, token_info  # noqa: E402
from masklab.models import build_model  # noqa: E402
from masklab.objectives.bd3 import BD3  # noqa: E402
from masklab.sample.block import block_generate, load_block_lm  # noqa: E402


def timed(model, x, **kw):
    began, cpu = time.perf_counter(), time.process_time()
    g = block_generate(model, x, return_order=True, **kw)
    return g, time.perf_counter() - began, time.process_time() - cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--length", type=int, default=1024, help="positions per row (prompt of one token, then masks)")
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--sampler", default="confidence")
    p.add_argument("--model", default=None, help="a trained bd3 run (default: an untrained tiny Llama)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model, tok = load_block_lm(args.model)
        info = token_info(tok)
    else:
        info = token_info(byte_tokenizer())
        torch.manual_seed(0)
        model = build_model("llama", "tiny", info, args.length).eval()
        BD3(model, info, block_size=args.block)  # marks it block-causal
    x = torch.full((args.batch, args.length), info.mask_id)
    x[:, 0] = info.bos_id if info.bos_id is not None else 0
    kw = dict(mask_id=info.mask_id, block_length=args.block, sampler=args.sampler, seed=list(range(args.batch)))
    block_generate(model, x[:, : 2 * args.block], cache=True, **kw)  # warm-up: first-call compilation off the clock
    print(f"{args.batch} rows x {args.length} positions, blocks of {args.block}, sampler {args.sampler}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)  # fmt: skip
    cached, wall_c, cpu_c = timed(model, x, cache=True, **kw)
    print(f"  masklab (KV cache)   {wall_c:8.1f} s wall {cpu_c:8.1f} s CPU  {cached.nfe} calls "
          f"+ {cached.stats['commits']} block commits", flush=True)  # fmt: skip
    plain, wall_u, cpu_u = timed(model, x, cache=False, **kw)
    print(f"  anchor (no cache)    {wall_u:8.1f} s wall {cpu_u:8.1f} s CPU  {plain.nfe} calls", flush=True)
    same = torch.equal(cached.ids, plain.ids)
    print(f"  same ids: {same};  cache speed-up {wall_u / wall_c:.1f}x wall, {cpu_u / cpu_c:.1f}x CPU")
    if not same:
        raise SystemExit("the cached and uncached ids differ")


if __name__ == "__main__":
    main()
