"""Fine-tune a tiny causal LM for token labelling, with chosen layers made bidirectional.

"Do Not (Always) Look Right" (Dukic & Snajder, 2024, arXiv:2401.14556): a decoder's causal mask hides the
right
context that sequence labelling needs; removing it in a group of layers during fine-tuning helps. Here the
task
makes the right context decisive: label each Python token of the standard library (read with ``tokenize``) as

    0 OTHER    keywords, operators, literals, layout
    1 NAME     an identifier that is not called
    2 CALLEE   an identifier immediately followed by "(" (a call or a definition)

NAME vs CALLEE depends only on the NEXT token, which a causal model cannot see. The script trains the same
random-init LlamaForTokenClassification twice (same seed, same batches): once causal, once with the layer-wise
configuration ``--layers`` (default ``layerwise:bidir=0-1,causal=2-3``), and prints validation accuracy.

    .venv/bin/python examples/layerwise_token_classification.py --steps 300
"""

from __future__ import annotations

import argparse
import io
import keyword
import time
import tokenize
import zlib

import torch
from transformers import LlamaConfig, LlamaForTokenClassification

from masklab.attention import hf
from masklab.attention.spec import parse_layerwise
from masklab.data.stdlib import split_of, stdlib_files

LABELS = ("OTHER", "NAME", "CALLEE")
N_NAME_BUCKETS = 256  # identifiers are hashed into buckets: the task is about syntax, not spelling
FIXED = ["<pad>", "NUMBER", "STRING", "COMMENT", "NEWLINE", "INDENT", "DEDENT", "OTHER"]
FIXED += sorted(keyword.kwlist) + sorted(set(tokenize.EXACT_TOKEN_TYPES))
FIXED_ID = {s: i for i, s in enumerate(FIXED)}
VOCAB = len(FIXED) + N_NAME_BUCKETS


def encode_source(src: str) -> tuple[list[int], list[int]]:
    """Token ids and labels of one Python source (empty on a tokenize error)."""
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type != tokenize.NL]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [], []
    ids, labels = [], []
    for i, t in enumerate(toks):
        if t.type == tokenize.ENDMARKER:
            break
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        if t.type == tokenize.NAME and not keyword.iskeyword(t.string):
            ids.append(len(FIXED) + zlib.crc32(t.string.encode()) % N_NAME_BUCKETS)
            labels.append(2 if nxt == "(" else 1)
            continue
        name = tokenize.tok_name[t.type]
        if t.type == tokenize.NAME or t.type == tokenize.OP:
            ids.append(FIXED_ID.get(t.string, FIXED_ID["OTHER"]))
        else:
            ids.append(FIXED_ID.get(name, FIXED_ID["OTHER"]))
        labels.append(0)
    return ids, labels


def load_chunks(split: str, max_files: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, seq_len) ids and labels from stdlib files of one split (hash of the path, as masklab.data)."""
    ids, labels = [], []
    files = [p for rel, p in stdlib_files() if split_of(rel) == split][:max_files]
    for path in files:
        a, b = encode_source(path.read_text(encoding="utf-8", errors="replace"))
        ids += a
        labels += b
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"no {split} chunks of length {seq_len} from {len(files)} files")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len), torch.tensor(labels[: n * seq_len]).view(n, seq_len)


def build_model(n_layers: int, seed: int) -> LlamaForTokenClassification:
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,  # tiny: trains on a laptop CPU in about a minute
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        num_labels=len(LABELS),
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return LlamaForTokenClassification(cfg)


def evaluate(model, ids, labels, batch: int = 64) -> dict:
    model.eval()
    correct = torch.zeros(len(LABELS))
    total = torch.zeros(len(LABELS))
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            pred = model(ids[i : i + batch]).logits.argmax(-1)
            y = labels[i : i + batch]
            for c in range(len(LABELS)):
                total[c] += (y == c).sum()
                correct[c] += ((pred == y) & (y == c)).sum()
    model.train()
    return {
        "accuracy": float(correct.sum() / total.sum()),
        **{f"recall_{name}": float(correct[c] / total[c].clamp(min=1)) for c, name in enumerate(LABELS)},
    }


def train_one(layers: str | None, data, args) -> dict:
    (train_ids, train_labels), (valid_ids, valid_labels) = data
    model = build_model(args.n_layers, args.seed)
    plan = hf.use_masks(model, layers) if layers else {}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)  # same batches for every configuration
    t0 = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for _ in range(args.steps):
        idx = torch.randint(0, len(train_ids), (args.batch,), generator=g)
        loss = model(train_ids[idx], labels=train_labels[idx]).loss  # causal-LM masks through masklab per layer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    result = evaluate(model, valid_ids, valid_labels)
    result.update(
        config=layers or "causal",
        bidirectional_layers=sorted(i for i, m in plan.items() if m.__name__ == "full"),
        final_train_loss=loss.item(),
        seconds=time.perf_counter() - t0,
    )
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="layerwise:bidir=0-1,causal=2-3", help="layer-wise mask spec to compare")
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-files", type=int, default=60, help="stdlib files per split")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    parse_layerwise(args.layers)  # fail early on a bad spec
    data = (
        load_chunks("train", args.max_files, args.seq_len),
        load_chunks("valid", args.max_files, args.seq_len),
    )
    print(f"train {tuple(data[0][0].shape)} valid {tuple(data[1][0].shape)} chunks, vocab {VOCAB}")
    results = [train_one(None, data, args), train_one(args.layers, data, args)]
    print(f"{'config':<36} {'acc':>6} {'NAME':>6} {'CALLEE':>6} {'OTHER':>6} {'s':>5}")
    for r in results:
        print(
            f"{r['config']:<36} {r['accuracy']:6.3f} {r['recall_NAME']:6.3f} {r['recall_CALLEE']:6.3f} "
            f"{r['recall_OTHER']:6.3f} {r['seconds']:5.0f}"
        )
    return results


if __name__ == "__main__":
    main()
