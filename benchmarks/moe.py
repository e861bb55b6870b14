"""MoE (moe-tiny: 4 top-1 experts per MLP, Switch-style) against the dense `ar` model at equal steps and equal
active parameters, on stdlib code bytes; also the expert load of the last MoE run as a picture.

    .venv/bin/python benchmarks/moe.py [--steps 150] [--seeds 0 1] [--seq-len 64] [--batch-size 16]
                                       [--picture docs/moe_load.png]

Every arm trains through `masklab.train.loop.train` with the same data, seed, schedule and attention; the MoE arms
differ only in their MLPs (and the routers' auxiliary losses, which `bits` leaves out). Reported per seed: the
held-out next-token cross-entropy in bits per byte and the wall time; then each MoE arm minus the dense arm, the
mean difference with a 95% t-interval over seeds, and the wall-time ratio (anchor: dense `ar`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from masklab.compare.report import mean_ci as t_mean_ci  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

ARMS = {  # name: (recipe, extra overrides)
    "dense ar": ("ar", []),
    "moe top-1, capacity 1.25": ("moe-tiny", []),
    "moe top-1, dropless": ("moe-tiny", ["capacity_factor=0"]),
}


def run(recipe: str, extra: list[str], seed: int, args, out: Path) -> tuple[float, float]:
    over = [f"seed={seed}", f"steps={args.steps}", f"seq_len={args.seq_len}", f"batch_size={args.batch_size}",
            f"warmup={args.warmup}", "eval_every=0", "ckpt_every=0", f"eval_batches={args.eval_batches}",
            "max_minutes=0", "log_every=10", *extra]  # fmt: skip
    t = time.perf_counter()
    s = train(apply_overrides(get_recipe(recipe), over), out, progress=False)
    return s["eval"]["bits"], time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    p.add_argument("--picture", default=None, help="write the expert load of the last capacity-1.25 run here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="moe-bench-"))
    bits: dict[str, list[float]] = {a: [] for a in ARMS}
    secs: dict[str, list[float]] = {a: [] for a in ARMS}
    for seed in args.seeds:
        for arm, (recipe, extra) in ARMS.items():
            b, s = run(recipe, extra, seed, args, root / f"{recipe}-{len(extra)}-{seed}")
            bits[arm].append(b)
            secs[arm].append(s)
            print(f"seed {seed}  {arm:<26} {b:.4f} bits/byte  {s:7.1f} s", flush=True)
    anchor = "dense ar"
    print(f"\n{args.steps} steps x {args.batch_size} x {args.seq_len} bytes, seeds {args.seeds}")
    for arm in ARMS:
        d = [b - a for a, b in zip(bits[anchor], bits[arm], strict=True)]
        mean = statistics.mean(d)
        half = t_mean_ci(d)[1] if len(d) > 1 else float("nan")
        ratio = statistics.mean(secs[arm]) / statistics.mean(secs[anchor])
        print(f"{arm:<26} bits {statistics.mean(bits[arm]):.4f}  minus dense {mean:+.4f} (95% CI +-{half:.4f})  "
              f"wall time x{ratio:.2f}")  # fmt: skip
    if args.picture:
        from masklab.train.recipes.moe import run_expert_loads
        from masklab.viz import PICTURE

        last = root / f"moe-tiny-0-{args.seeds[-1]}"
        load, dropped = run_expert_loads(last, batches=args.eval_batches)
        for i, (row, d) in enumerate(zip(load.tolist(), dropped.tolist(), strict=True)):
            print(f"layer {i}: tokens per expert {[int(v) for v in row]}, dropped {d:.1%}")
        title = f"moe-tiny, {args.steps} steps, seed {args.seeds[-1]}"
        print(PICTURE.get("moe")(args.picture, load=load, dropped=dropped, title=title))


if __name__ == "__main__":
    main()
