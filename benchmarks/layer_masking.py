"""Missingness bias of input masking on scikit-learn digits: layer masking against grey and black fill.

    .venv/bin/python benchmarks/layer_masking.py [--seeds 0 1 2] [--epochs 15]

A small CNN (4 conv layers, batch norm, max pooling, global average pooling) is trained on the clean digits, each
8x8 pixel drawn as a 2x2 block of a 16x16 image (1347 train images), then 2x2 patches (one original pixel each) of
the 450 test images are removed in three ways: painted black (0, which is
also the digits' background colour), painted grey (0.5), or carried as a mask through the same CNN by
:class:`masklab.models.layer_masking.LayerMasking` (Balasubramanian & Feizi 2023). Missingness bias is the shift
of the predictions caused by masking (Jain et al. 2022; Balasubramanian & Feizi Sec. 4), measured two ways:

- ``random``: k of the 64 patches chosen at random: information is lost as well, so some shift is deserved;
- ``blank``: k patches chosen among those that are blank (all 0) in the image: no pixel of the digit is removed,
  so every change of prediction is bias from the masking itself.

Reported per regime and k: accuracy, the share of predictions that flip from the unmasked prediction, and the
mean KL(p_unmasked || p_masked) in nats, averaged over CNN seeds with the spread across seeds; then the ratio of
the flip rates, layer masking over each fill (anchor: grey and black fill).
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from masklab.data.digits import N_TRAIN, digits_images
from masklab.models.layer_masking import LayerMasking, fill

SIZE, PATCH = 16, 2
GRID = SIZE // PATCH  # 8 x 8 patches: the original pixels
METHODS = ("black", "grey", "layer")


def cnn(seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip
    with torch.no_grad():  # every weight from the seeded generator: nn's default bound 1/sqrt(fan_in), zero biases
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.uniform_(-1, 1, generator=g).mul_(m.weight[0].numel() ** -0.5)
                m.bias.zero_()
    return net


def train(net: nn.Sequential, x, y, epochs: int, seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed + 1000)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def patch_masks(x: torch.Tensor, k: int, blank_only: bool, seed: int) -> torch.Tensor:
    """(N, SIZE, SIZE) bool, True = visible: k of the GRID x GRID patches hidden per image (among the blank ones
    with ``blank_only``; fewer if fewer are blank)."""
    g = torch.Generator().manual_seed(seed)
    N = len(x)
    patches = x[:, 0].reshape(N, GRID, PATCH, GRID, PATCH).amax((2, 4)).reshape(N, -1)  # (N, 16) brightest pixel
    allowed = patches <= 1e-6 if blank_only else torch.ones_like(patches, dtype=torch.bool)
    score = torch.rand(N, GRID * GRID, generator=g).masked_fill(~allowed, 2.0)  # disallowed patches sort last
    hide = torch.zeros(N, GRID * GRID, dtype=torch.bool)
    order = score.argsort(1)[:, :k]
    hide.scatter_(1, order, torch.gather(allowed, 1, order))
    hide = hide.reshape(N, GRID, 1, GRID, 1).expand(N, GRID, PATCH, GRID, PATCH).reshape(N, SIZE, SIZE)
    return ~hide


@torch.no_grad()
def probs(net, x, mask, method: str) -> torch.Tensor:
    if method == "layer":
        return LayerMasking(net)(x, mask).softmax(-1)
    return net(fill(x, mask, 0.0 if method == "black" else 0.5)).softmax(-1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--ks", type=int, nargs="+", default=[8, 16, 24, 32], help="patches hidden, of 64")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x, y = digits_images(8)
    x = F.interpolate(x, scale_factor=SIZE // 8, mode="nearest")  # blank pixels stay exactly 0
    xtr, ytr, xte, yte = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    rows: dict[tuple, list[tuple[float, float, float]]] = {}
    hidden: dict[tuple, float] = {}  # mean patches actually hidden (blank: fewer when an image has fewer blank)
    for seed in args.seeds:
        net = train(cnn(seed), xtr, ytr, args.epochs, seed)
        clean = net(xte).softmax(-1)
        print(f"seed {seed}: clean test accuracy {(clean.argmax(-1) == yte).float().mean():.3f}", flush=True)
        for regime in ("random", "blank"):
            for k in args.ks:
                mask = patch_masks(xte, k, regime == "blank", seed=10_000 + 97 * k + (regime == "blank"))
                hidden[(regime, k)] = (~mask).float().sum((1, 2)).mean().item() / PATCH**2
                for method in METHODS:
                    pm = probs(net, xte, mask, method)
                    acc = (pm.argmax(-1) == yte).float().mean().item()
                    flip = (pm.argmax(-1) != clean.argmax(-1)).float().mean().item()
                    kl = (clean * (clean.clamp_min(1e-12).log() - pm.clamp_min(1e-12).log())).sum(-1).mean().item()
                    rows.setdefault((regime, k, method), []).append((acc, flip, kl))

    def mean_sd(vals):
        return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

    print(f"\n{len(args.seeds)} CNN seeds; test set of {len(xte)}; mean (sd across seeds)")
    print(f"{'regime':<7} {'k':>2} {'hidden':>6} {'method':<6} {'accuracy':>15} {'flip rate':>15} {'KL nats':>15}")
    for (regime, k, method), vals in rows.items():
        cells = [mean_sd([v[i] for v in vals]) for i in range(3)]
        print(
            f"{regime:<7} {k:>2} {hidden[(regime, k)]:>6.2f} {method:<6} "
            + " ".join(f"{m:>7.3f} ({s:.3f})" for m, s in cells)
        )
    print("\nflip-rate ratio, layer masking / fill (below 1: less missingness bias)")
    for regime in ("random", "blank"):
        for k in args.ks:
            layer = statistics.mean(v[1] for v in rows[(regime, k, "layer")])
            ratios = []
            for anchor in ("grey", "black"):
                base = statistics.mean(v[1] for v in rows[(regime, k, anchor)])
                ratios.append(f"/{anchor} {layer / base:.2f}" if base > 0 else f"/{anchor} n/a ({anchor} flips none)")
            print(f"{regime:<7} k={k:<2} layer {layer:.3f}  " + "  ".join(ratios))


if __name__ == "__main__":
    main()
