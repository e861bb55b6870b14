"""MAE on scikit-learn's bundled digits with every patch strategy; linear-probe accuracy vs raw pixels.

    .venv/bin/python benchmarks/mae_digits.py                 # full run (~10 min on 2 shared CPU cores)
    .venv/bin/python benchmarks/mae_digits.py --steps 20      # smoke run
    .venv/bin/python benchmarks/mae_digits.py --strategies hpm --hpm-ema 0.9,0.99   # HPM with a faster teacher

Digits (1797 images, 8x8, no download) are upsampled to 16x16 (bilinear) so that a 2x2-pixel patch has several
distinct pixels for MAE's per-patch normalized target; the grid is 8x8 patches. One fixed split: 1347 train /
450 test (keyed permutation, seed 0). Each strategy trains the same tiny MAE (same init, same batches, same
step count) and is probed with a logistic regression on the mean-pooled encoder output with every patch
visible. HPM's masks come from its EMA teacher, whose decay rises from 0.999 to 0.9999 by default (the reference's
values, meant for runs of 10^5 steps and more): over a few hundred steps that teacher stays close to its
initialisation. ``--hpm-ema START,END`` sets other values.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matmuls: one thread each avoids spin-waits on a shared CPU

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from masklab.corrupt import keyed  # noqa: E402
from masklab.data.digits import digits_images  # noqa: E402
from masklab.models.vit_mae import MaskedViT  # noqa: E402
from masklab.objectives.mae import mask_for  # noqa: E402
from masklab.train import checkpoint  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.probe import linear_probe  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

STRATEGIES = [
    "random",
    "block",
    "simmim",
    "colormae-white",
    "colormae-red",
    "colormae-blue",
    "colormae-green",
    "colormae-purple",
    "hpm",
    "referring",
]


def _recipe(strategy: str, cfg: dict, args):
    """The mae-digits recipe of one strategy (lr 2e-3, warm-up, AdamW decay on 2-D weights)."""
    over = [
        f"strategy={strategy}",
        f"mask_ratio={args.ratio}",
        f"steps={args.steps}",
        f"batch_size={args.batch_size}",
        f"seed={args.seed}",
        f"warmup={min(100, max(1, args.steps // 4))}",
        "eval_every=0",
        "ckpt_every=0",
        "eval_batches=1",
    ] + [f"{k}={v}" for k, v in cfg.items()]
    if strategy == "hpm":
        start, end = args.hpm_ema.split(",")
        over += [f"ema_decay={start}", f"ema_decay_end={end}"]
    return apply_overrides(get_recipe("mae-digits"), over)


def _train(strategy: str, cfg: dict, args) -> MaskedViT:
    """One strategy through the shared loop; the trained model read back from the run folder."""
    with tempfile.TemporaryDirectory() as run:
        train(_recipe(strategy, cfg, args), run, progress=False)
        return checkpoint.load(run).model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ratio", type=float, default=0.75)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hpm-ema", default="0.999,0.9999", help="HPM teacher decay at the start and end of training")
    args = ap.parse_args()
    x, y = digits_images(16)
    y = y.numpy()
    raw = digits_images(8)[0].reshape(len(x), -1).numpy()  # the original 64 pixels, same order
    n_train = 1347
    ytr, xte, yte = y[:n_train], x[n_train:], y[n_train:]
    cfg = dict(image_size=16, patch_size=2, dim=64, depth=2, decoder_dim=32)  # mae-digits fields
    rows = [("raw pixels (64 values)", linear_probe(raw[:n_train], ytr, raw[n_train:], yte), "", 0.0)]
    init = _recipe("random", cfg, args).build().objective.model.eval()  # the init every strategy starts from
    f = init.features(x).numpy()
    rows.append(("untrained encoder", linear_probe(f[:n_train], ytr, f[n_train:], yte), "", 0.0))
    t_all = time.time()
    for s in args.strategies.split(","):
        t0 = time.time()
        model = _train(s, cfg, args)
        f = model.features(x).numpy()
        with torch.no_grad():
            keys = keyed.example_keys(args.seed, 0xFFFF, torch.arange(len(xte)))
            pm = mask_for("random", model, xte, keys, args.ratio, 1.0)  # same test mask for every strategy
            recon = float(model(xte, pm).recon)
        acc = linear_probe(f[:n_train], ytr, f[n_train:], yte)
        rows.append((s, acc, f"{recon:.3f}", time.time() - t0))
        print(
            f"{s:16s} probe {acc:.4f}  test recon (random mask) {recon:.3f}  {time.time() - t0:.0f}s",
            flush=True,
        )
    print(
        f"\ntotal {time.time() - t_all:.0f}s, steps {args.steps}, batch {args.batch_size}, ratio {args.ratio}, "
        f"hpm ema {args.hpm_ema}\n"
    )
    print("| features | linear-probe acc (450 test) | MAE loss on a random 75% test mask | train time (s) |")
    print("|---|---|---|---|")
    for name, acc, recon, t in rows:
        print(f"| {name} | {acc:.3f} | {recon} | {t:.0f} |")


if __name__ == "__main__":
    main()
