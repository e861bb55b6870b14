"""GPU check for token corruption. On one H100: ``PYTHONPATH=src python3 benchmarks/gpu_corruption.py``.

1. Device invariance: every keyed strategy gives bit-identical masks on CPU and CUDA.
2. Time of masklab random / whole-word masking on CUDA at B=256, L=512. Finishes well under 120 s.
"""

from __future__ import annotations

import time

import torch

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import mdiff4str_noise, mdm_noise, sample_t
from masklab.corrupt.guided import score_guided_mask
from masklab.corrupt.meap import meap_mask
from masklab.corrupt.replace import electra_mask, sample_replacements
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import random_mask, whole_word_mask

V, MASK, SPECIAL = 30522, 103, [0, 100, 101, 102, 103]


def strategies(ids, keys, wid, scores):
    c = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL)
    yield "random", random_mask(ids, keys, **c).inputs
    yield "random count", random_mask(ids, keys, count=40, **c).inputs
    yield "whole_word", whole_word_mask(ids, keys, wid, **c).inputs
    yield "span", span_mask(ids, keys, word_ids=wid, min_gap=1, **c).inputs
    yield "meap", meap_mask(ids, keys, mask_id=MASK, special_ids=SPECIAL).inputs
    yield "mdm", mdm_noise(ids, keys, sample_t(keys), mask_id=MASK, special_ids=SPECIAL).inputs
    yield "mdiff4str", mdiff4str_noise(ids, keys, replace_prob=0.1, **c).inputs
    yield "guided", score_guided_mask(ids, keys, scores, mode="proportional", **c).inputs
    e = electra_mask(ids[:8], keys[:8], **c)
    logits = torch.linspace(-3, 3, V, device=ids.device).expand(8, ids.shape[1], V)
    yield "rtd sample", sample_replacements(logits, ids[:8], e.mask, keys[:8], method="multinomial")


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA")
    B, L = 256, 512
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, V, (B, L), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    wid = torch.arange(L).expand(B, L) // 2
    scores = torch.rand(B, L, generator=g)
    keys = keyed.example_keys(0, 0, range(B))
    cpu = dict(strategies(ids, keys, wid, scores))
    gpu = dict(strategies(ids.cuda(), keys.cuda(), wid.cuda(), scores.cuda()))
    for name in cpu:
        same = torch.equal(cpu[name], gpu[name].cpu())
        print(f"{name:14s} CPU == CUDA: {same}")
    d = dict(mask_id=MASK, vocab_size=V, special_ids=SPECIAL)
    ic, kc, wc = ids.cuda(), keys.cuda(), wid.cuda()
    for name, f in (("random", lambda: random_mask(ic, kc, **d)),
                    ("whole_word", lambda: whole_word_mask(ic, kc, wc, **d))):
        f()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(50):
            f()
        torch.cuda.synchronize()
        print(f"{name:14s} CUDA {(time.perf_counter() - t) / 50 * 1e3:.3f} ms per [{B}, {L}] batch")

if __name__ == "__main__":
    main()
