"""The demo's first impression from a pretrained start: infill of held-out stdlib code by the byte-level demo MDM
trained from scratch against an MDM fine-tuned from all-MiniLM-L6-v2, at the same wall-time budget.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_init.py [--minutes 3.75] [--examples 200] [--seeds 0]

Both arms run the ``mdm-tiny`` recipe on ``stdlib-code`` for ``--minutes`` of wall time (``max_minutes``):
``scratch`` is ``make demo``'s model (bytes, tiny preset, lr 3e-3); ``minilm`` starts from
``init=sentence-transformers/all-MiniLM-L6-v2`` (the offline package; its uncased WordPiece tokenizer replaces
the bytes) at a fine-tuning lr of 1e-4. Then each fills the same held-out identifiers: ``--examples`` lines of
stdlib code from the valid split, in each one identifier of 3 or more characters (not a keyword) replaced by as
many mask tokens as it has in the model's own tokenizer (its bytes, or its WordPieces), with ``--context``
characters of code on each side; greedy confidence decoding. Scores: the identifier filled exactly (compared
lowercased and without spaces, since MiniLM is uncased), and the share of masked tokens filled with the right
token in each model's own units.
"""

from __future__ import annotations

import argparse
import keyword
import re
import tempfile
import time
from pathlib import Path

import torch

IDENT = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]{2,})\b")


def snippets(n: int, context: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(left, identifier, right) from held-out stdlib files, sampled evenly over the found identifiers."""
    from masklab.data.stdlib import split_of, stdlib_files

    found = []
    for rel, path in stdlib_files():
        if split_of(rel) != "valid":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for m in IDENT.finditer(text):
            word = m.group(1)
            if keyword.iskeyword(word) or m.start() < context:
                continue
            found.append((text[m.start() - context : m.start()], word, text[m.end() : m.end() + context]))
    g = torch.Generator().manual_seed(seed)
    return [found[i] for i in torch.randperm(len(found), generator=g)[:n].tolist()]


def train_arm(name: str, out: Path, minutes: float, seed: int) -> dict:
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    common = [f"seed={seed}", f"max_minutes={minutes}", "steps=100000", "eval_every=0", "ckpt_every=0",
              "eval_batches=4"]  # fmt: skip
    if name == "minilm":
        common += ["init=sentence-transformers/all-MiniLM-L6-v2", "lr=1e-4", "warmup=10"]
    recipe = apply_overrides(get_recipe("mdm-tiny"), common)
    return train(recipe, out, progress=False)


@torch.no_grad()
def infill_scores(folder: Path, items) -> dict:
    from masklab.sample import generate
    from masklab.train import checkpoint

    loaded = checkpoint.load(folder)
    model, tok = loaded.model.eval(), loaded.tokenizer
    exact = tokens_right = tokens = 0
    for left, word, right in items:
        a = tok(left, add_special_tokens=False)["input_ids"]
        w = tok(word, add_special_tokens=False)["input_ids"]
        b = tok(right, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([a + [tok.mask_token_id] * len(w) + b])
        out = generate(model, ids, mask_id=tok.mask_token_id, sampler="confidence", temperature=0.0, seed=0)
        filled = out[0, len(a) : len(a) + len(w)].tolist()
        text = tok.decode(filled)
        exact += "".join(text.split()).lower() == word.lower()
        tokens_right += sum(int(x == y) for x, y in zip(filled, w, strict=True))
        tokens += len(w)
    n = len(items)
    return {"exact": exact / n, "token_acc": tokens_right / tokens, "tokens_per_identifier": tokens / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.75)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--context", type=int, default=48, help="characters of code on each side of the identifier")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    items = snippets(args.examples, args.context)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm in ("scratch", "minilm"):
                began = time.perf_counter()
                summary = train_arm(arm, Path(tmp) / f"{arm}{seed}", args.minutes, seed)
                scores = infill_scores(Path(tmp) / f"{arm}{seed}", items)
                print(f"seed {seed} {arm:8} steps {summary['step']:5d}  held-out bound "
                      f"{summary['eval'].get('nll_bound_bits', float('nan')):.3f} bits/token  identifier exact "
                      f"{scores['exact']:.3f}  token acc {scores['token_acc']:.3f}  "
                      f"({scores['tokens_per_identifier']:.1f} tokens per identifier, "
                      f"{time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
