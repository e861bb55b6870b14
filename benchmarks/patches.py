"""Patch and frame mask speed: masklab vs the anchors, in one process.

    .venv/bin/python benchmarks/patches.py
    MASKLAB_JIT=0 .venv/bin/python benchmarks/patches.py     # frames on masklab's numpy path, not numba

Frames: ``span_mask`` vs Hugging Face ``_compute_mask_indices`` (the fairseq port, per-row NumPy loop) at
(64, 500), mask_prob 0.65, mask_length 10 (wav2vec2 base). Patches: batch 256 on a 14x14 grid; anchors are
MAE's
``random_masking`` (torch.rand + argsort) and BEiT's ``MaskingGenerator`` (per-image Python loop, re-typed
here from the BEiT repository's semantics). One thread: the masks are small and the machine is shared.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np
import torch
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from masklab.corrupt import jit, keyed
from masklab.corrupt import patches as P
from masklab.corrupt.frames import span_mask

SYNC = lambda: None  # noqa: E731  (torch.cuda.synchronize with --device cuda)


def bench(fn, min_time=1.0, reps=5):
    """Median over ``reps`` rounds of the mean time per call (seconds)."""
    fn()
    SYNC()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        SYNC()
        dt = time.perf_counter() - t
        if dt > min_time / reps:
            break
        n *= 2
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        SYNC()
        out.append((time.perf_counter() - t) / n)
    return float(np.median(out))


def mae_random_masking(B, N, ratio):
    """MAE's random_masking, mask part only (models_mae.py)."""
    len_keep = int(N * (1 - ratio))
    noise = torch.rand(B, N)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(B, N)
    mask[:, :len_keep] = 0
    return torch.gather(mask, 1, ids_restore), ids_shuffle[:, :len_keep], ids_restore


class BeitMaskingGenerator:
    """BEiT's block-wise generator (per image, Python loop)."""

    def __init__(self, size, num_masking_patches, min_num_patches=16, min_aspect=0.3):
        self.height = self.width = size
        self.num = num_masking_patches
        self.min_num = min_num_patches
        self.max_num = num_masking_patches
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def _mask(self, mask, max_mask_patches):
        delta = 0
        for _ in range(10):
            target_area = random.uniform(self.min_num, max_mask_patches)
            aspect = math.exp(random.uniform(*self.log_aspect))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < self.width and h < self.height:
                top = random.randint(0, self.height - h)
                left = random.randint(0, self.width - w)
                num_masked = mask[top : top + h, left : left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    def __call__(self):
        mask = np.zeros((self.height, self.width), dtype=np.int64)
        count = 0
        while count < self.num:
            delta = self._mask(mask, min(self.num - count, self.max_num))
            if delta == 0:
                break
            count += delta
        return mask


def main():
    global SYNC
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="device for the masklab side (anchors stay on CPU)")
    dev = torch.device(ap.parse_args().device)
    if dev.type == "cuda":
        SYNC = torch.cuda.synchronize
    torch.set_num_threads(1)
    print(f"masklab CPU path for frames: {jit.describe()}")
    rows = []
    np.random.seed(0)
    random.seed(0)

    # frames
    hf = bench(lambda: _compute_mask_indices((64, 500), 0.65, 10))
    ours = bench(lambda: span_mask((64, 500), 0.65, 10, seed=0, device=dev))
    keys = keyed.example_keys(0, 0, torch.arange(64), device=dev)  # what a training loop passes in
    ours_k = bench(lambda: span_mask((64, 500), 0.65, 10, keys=keys))
    gen = torch.Generator(device=dev).manual_seed(0)
    ours_g = bench(lambda: span_mask((64, 500), 0.65, 10, seed=gen))
    rows += [
        ("frames (64, 500) p=0.65 M=10", "HF _compute_mask_indices", hf, "span_mask (seed=int)", ours),
        ("", "", hf, "span_mask (keys given)", ours_k),
        ("", "", hf, "span_mask (torch.Generator)", ours_g),
    ]
    lengths = torch.randint(250, 501, (64,), generator=torch.Generator().manual_seed(1))
    att = (torch.arange(500) < lengths[:, None]).long()
    hf_p = bench(lambda: _compute_mask_indices((64, 500), 0.65, 10, attention_mask=att))
    ours_p = bench(lambda: span_mask((64, 500), 0.65, 10, lengths=lengths.to(dev), seed=0, device=dev))
    rows.append(("frames, padded lengths 250-500", "HF _compute_mask_indices", hf_p, "span_mask (keyed)", ours_p))
    ours_s = bench(lambda: span_mask((64, 500), 0.65, 10, lengths=lengths.to(dev), same_count=True, seed=0, device=dev))
    rows.append(("frames, padded, same_count", "HF (no equal counts)", hf_p, "span_mask same_count", ours_s))

    # patches
    B, grid = 256, (14, 14)
    mae = bench(lambda: mae_random_masking(B, 196, 0.75))
    r_keyed = bench(lambda: P.random_patches(grid, 0.75, batch=B, seed=0, device=dev).mask)
    pkeys = keyed.example_keys(0, 0, torch.arange(B), device=dev)
    r_keys = bench(lambda: P.random_patches(grid, 0.75, keys=pkeys).mask)
    r_gen = bench(lambda: P.random_patches(grid, 0.75, batch=B, seed=gen, device=dev).mask)
    r_ids = bench(lambda: P.random_patches(grid, 0.75, batch=B, seed=0, device=dev).ids_restore)
    rows += [
        ("random 256 x 14x14", "MAE random_masking", mae, "random_patches (seed=int), mask", r_keyed),
        ("", "", mae, "random_patches (keys given), mask", r_keys),
        ("", "", mae, "random_patches (torch.Generator), mask", r_gen),
        ("", "", mae, "random_patches (keyed), mask + ids", r_ids),
    ]
    for color in ("green", "red"):
        c_keyed = bench(lambda c=color: P.colormae_patches(grid, c, 0.75, keys=pkeys).mask)
        c_gen = bench(lambda c=color: P.colormae_patches(grid, c, 0.75, batch=B, seed=gen, device=dev).mask)
        rows += [
            (
                f"colormae-{color} 256 x 14x14",
                "MAE random_masking (argsort)",
                mae,
                "colormae_patches (keys given), mask",
                c_keyed,
            ),
            ("", "", mae, "colormae_patches (torch.Generator), mask", c_gen),
        ]
    beit = BeitMaskingGenerator(14, 75)
    t_beit = bench(lambda: [beit() for _ in range(B)], min_time=2.0, reps=3)
    t_block = bench(lambda: P.block_patches(grid, 75 / 196, batch=B, seed=0, device=dev).mask)
    rows.append(("block 256 x 14x14, 75 patches", "BEiT MaskingGenerator x256", t_beit, "block_patches", t_block))
    short = np.mean([beit().sum() < 75 for _ in range(2000)])
    t_simmim = bench(lambda: P.simmim_patches(grid, 0.6, cell=2, batch=B, seed=0, device=dev).mask)
    rows.append(("simmim 256 x 14x14 (cell 2)", "MAE random_masking", mae, "simmim_patches", t_simmim))

    print("| case | anchor | anchor ms | masklab | masklab ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for case, anchor, ta, name, tm in rows:
        print(f"| {case} | {anchor} | {ta * 1e3:.3f} | {name} | {tm * 1e3:.3f} | {ta / tm:.1f}x |")
    print(
        f"\nBEiT MaskingGenerator(14, 75) stops below 75 masked patches in {short:.1%} of 2000 draws; "
        "block_patches always masks exactly 75."
    )


if __name__ == "__main__":
    main()
