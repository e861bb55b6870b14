"""Talking Heads on a small `ar` model trained for list recall: find the top channel between two heads and ablate it.

    .venv/bin/python benchmarks/talking_heads.py [--seeds 0 1 2] [--steps 1500] [--preset micro]
                                                 [--kind k] [--rank 1] [--controls 20]

The task (synthetic, offline): 7 distinct random letters, ``|``, then the same 7 letters again; recall is the
share of the repeated letters the model predicts (greedy) on 1000 fresh lists. The `ar` recipe (Llama, bytes)
trains on 20000 such lists, one per 16-token window. Then :func:`masklab.attention.heads.channels` ranks every
(writer, reader) head pair with the writer earlier by its composition (``--kind``: q, k or v; Merullo et al. 2024
Sec. 3) and the top channel's ``--rank`` directions are removed from the writer's W_O
(:func:`~masklab.attention.heads.remove_directions`). Controls: as many random unit directions drawn inside the
same head's output space (``--controls`` draws), and masking the whole writer or reader head
(:func:`~masklab.attention.heads.head_mask`). Anchor: recall of the unablated model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from masklab.attention.heads import channels, head_circuits, head_mask, remove_directions  # noqa: E402
from masklab.data.tokenizers import build_tokenizer  # noqa: E402
from masklab.train.checkpoint import load  # noqa: E402
from masklab.train.loop import train  # noqa: E402
from masklab.train.recipes import get_recipe  # noqa: E402
from masklab.train.recipes.base import apply_overrides  # noqa: E402

ITEMS = 7  # letters per list: "abcdefg|abcdefg" + EOS = 16 tokens, one window


def example(rng: random.Random) -> str:
    items = "".join(rng.sample("abcdefghijklmnopqrstuvwxyz", ITEMS))
    return f"{items}|{items}"


def write_data(folder: Path, n: int = 20000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)  # one fixed training set for every seed
    with open(folder / "recall.jsonl", "w") as f:
        for _ in range(n):
            f.write(json.dumps({"text": example(rng)}) + "\n")
    return folder


@torch.no_grad()
def recall(model, ids: torch.Tensor) -> float:
    """Share of the repeated letters predicted by argmax from their prefix."""
    logits = model(input_ids=ids[:, :-1]).logits[:, ITEMS:]  # the predictions of tokens ITEMS+1 .. 2*ITEMS
    return (logits.argmax(-1) == ids[:, ITEMS + 1 :]).float().mean().item()


def random_directions(ov: torch.Tensor, rank: int, draws: int, seed: int) -> list[torch.Tensor]:
    """``draws`` random orthonormal (d, rank) frames inside the span the head writes to (its nonzero singular
    vectors)."""
    U, S, _ = torch.linalg.svd(ov)
    span = U[:, : int((S > S[0] * 1e-6).sum())]  # (d, d_head)
    g = torch.Generator().manual_seed(seed)
    return [span @ torch.linalg.qr(torch.randn(span.shape[1], rank, generator=g, dtype=span.dtype))[0]
            for _ in range(draws)]  # fmt: skip


def one_seed(seed: int, data: Path, root: Path, args, ids) -> dict:
    over = [f"data={data}", "tokenizer=bytes", "seq_len=16", f"preset={args.preset}", f"steps={args.steps}",
            "batch_size=64", "lr=3e-3", "warmup=50", "eval_every=0", "ckpt_every=0", "log_every=100",
            "eval_batches=4", f"seed={seed}"]  # fmt: skip
    t = time.perf_counter()
    train(apply_overrides(get_recipe("ar"), over), root / f"run{seed}", progress=False)
    model = load(root / f"run{seed}").model.eval()
    out = {"train_s": time.perf_counter() - t, "recall": recall(model, ids)}
    top = channels(model, kind=args.kind, rank=args.rank, top=1)[0]
    out.update(writer=top.writer, reader=top.reader, score=top.score)
    with remove_directions(model, *top.writer, top.directions):
        out["channel"] = recall(model, ids)
    ov = head_circuits(model).ov[top.writer]
    controls = []
    for frame in random_directions(ov, args.rank, args.controls, seed):
        with remove_directions(model, *top.writer, frame.float()):
            controls.append(recall(model, ids))
    out["random"] = controls
    L, H = head_circuits(model).ov.shape[:2]
    for name, (layer, head) in (("writer_head", top.writer), ("reader_head", top.reader)):
        keep = torch.ones(L, H)
        keep[layer, head] = 0
        with head_mask(model, keep):
            out[name] = recall(model, ids)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--preset", default="micro")
    p.add_argument("--kind", default="k", choices=["q", "k", "v"])
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--controls", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="talking-heads-"))
    data = write_data(root / "data")
    rng = random.Random(123)  # held-out lists, a stream apart from the training set's
    tokenizer = build_tokenizer("bytes", [], "bytes")  # the recipe's byte tokenizer (no training)
    ids = torch.tensor([tokenizer(example(rng), add_special_tokens=False)["input_ids"] for _ in range(1000)])
    rows = []
    for seed in args.seeds:
        r = one_seed(seed, data, root, args, ids)
        rows.append(r)
        print(f"seed {seed}: trained in {r['train_s']:.0f} s; recall {r['recall']:.3f}; top {args.kind}-channel "
              f"{r['writer']} -> {r['reader']} (score {r['score']:.3f}): ablated {r['channel']:.3f}; random "
              f"{args.rank}-dim ablations of the same head {statistics.mean(r['random']):.3f} "
              f"[{min(r['random']):.3f}, {max(r['random']):.3f}]; writer head masked {r['writer_head']:.3f}; "
              f"reader head masked {r['reader_head']:.3f}", flush=True)  # fmt: skip
    print(f"\nmean over {len(rows)} seeds: recall {statistics.mean(r['recall'] for r in rows):.3f} -> channel "
          f"ablated {statistics.mean(r['channel'] for r in rows):.3f}; random ablation "
          f"{statistics.mean(statistics.mean(r['random']) for r in rows):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
