"""Composable sparse fine-tuning in miniature (LT-SFT: Ansell et al., 2022, Sec. 3, Eq. 3): a language SFT and a
task SFT learnt separately, composed by addition, evaluated zero-shot; the number of entries k is swept.

    .venv/bin/python benchmarks/sft_compose.py [--ks 256 4096 0] [--seeds 0 1] [--threads 1]

- theta_0: a byte-level BERT (``BertForMaskedLM``, 2 layers, width 64) pretrained by MLM on the stdlib's code
  (train split): the "source language".
- Target language: the same code with every byte value sent through one fixed random permutation: a new script
  with the grammar of the source.
- Language SFT phi_L: LT-SFT of MLM on permuted train code, L1 pull 0.1 in both phases (reference
  ``examples/language-modeling/train_mlm.sh``).
- Task SFT phi_T: LT-SFT of keyword-line classification (``stdlib_tasks.keyword_lines``: a line of code without
  its leading keyword -> which of 8 keywords) on *source-language* lines, a linear head on mean-pooled states
  (part of theta_0, so it is one more set of entries of the SFT), no L1 (the reference's task scripts).
- Both SFTs leave LayerNorm frozen (``--freeze_layer_norm`` in every reference script).
- Zero-shot transfer: accuracy on *permuted* held-out lines of theta_0 + phi_L + phi_T (paper Eq. 3), against
  theta_0 + phi_T (no language SFT) and against the in-language accuracy of theta_0 + phi_T on source lines.
  Interference: the overlap of the two SFTs' entries, and the target MLM loss of theta_0 + phi_L before and after
  phi_T is added. ``k = 0`` means dense (every entry of the chosen parameters).

Anchor: none outside masklab; the comparison is within one run (composition against no language SFT, and each k
against dense). Every draw is keyed or comes from a seeded ``torch.Generator``; the global RNG is never read.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masklab.compare.report import mean_ci_text
from masklab.corrupt import keyed
from masklab.corrupt.strategies import TOKEN
from masklab.data.stdlib import load_stdlib
from masklab.data.stdlib_tasks import KEYWORDS, keyword_lines
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.sparsity.sft import apply_, lt_sft

PAD, SPECIALS = 0, 5  # byte b -> id b + 5; ids 0-4 are <pad> <mask> <bos> <eos> <unk> as in masklab's byte tokenizer
INFO = token_info(byte_tokenizer())


class ByteBert(nn.Module):
    """A byte-level BERT MLM with a classification head on the mean of the last hidden states."""

    def __init__(self, width: int, layers: int, classes: int, seed: int):
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        cfg = BertConfig(
            vocab_size=INFO.vocab_size, hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=4 * width, max_position_embeddings=128, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, pad_token_id=PAD,
        )  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # HF init draws from the global RNG: seed it inside a fork
            torch.manual_seed(seed)
            self.mlm = BertForMaskedLM(cfg)
            self.head = nn.Linear(width, classes)

    def mlm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlm(input_ids=ids, attention_mask=(ids != PAD).long()).logits  # (B, L, V)

    def classify(self, ids: torch.Tensor) -> torch.Tensor:
        am = (ids != PAD).unsqueeze(-1).float()  # (B, L, 1)
        h = self.mlm(input_ids=ids, attention_mask=am.squeeze(-1).long(), output_hidden_states=True).hidden_states[-1]
        return self.head((h * am).sum(1) / am.sum(1).clamp_min(1.0))  # (B, classes)


def encode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + SPECIALS


def windows(texts: list[str], length: int, count: int) -> torch.Tensor:
    """``count`` windows of ``length`` bytes, evenly spaced over the concatenated texts (B, L)."""
    stream = np.concatenate([encode(t) for t in texts])
    starts = np.linspace(0, len(stream) - length - 1, count).astype(np.int64)
    return torch.from_numpy(np.stack([stream[s : s + length] for s in starts]))


def lines(texts: list[str], length: int) -> torch.Tensor:
    """Lines padded with <pad> to ``length`` bytes (B, L)."""
    out = torch.full((len(texts), length), PAD, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = torch.from_numpy(encode(t)[:length])
        out[i, : len(ids)] = ids
    return out


def permute(ids: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The target language: every byte id goes through ``perm`` (256 byte values), specials stay."""
    table = torch.cat([torch.arange(SPECIALS), perm + SPECIALS])
    return table[ids]


def mlm_batches(ids: torch.Tensor, batch: int, seed: int) -> list[dict]:
    """BERT-corrupted batches (15%, 80/10/10; masklab's ``random`` strategy keyed on (seed, example index))."""
    out = []
    for i in range(0, len(ids) - batch + 1, batch):
        keys = keyed.train_keys(seed, 0, list(range(i, i + batch)))
        c = TOKEN.get("random")(ids[i : i + batch], keys, INFO, prob=0.15)
        out.append({"inputs": c.inputs, "targets": c.targets})
    return out


def mlm_loss(model: ByteBert, b: dict) -> torch.Tensor:
    logits = model.mlm_logits(b["inputs"])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["targets"].reshape(-1), ignore_index=-100)


def task_loss(model: ByteBert, b: dict) -> torch.Tensor:
    return F.cross_entropy(model.classify(b["ids"]), b["labels"])


@torch.no_grad()
def accuracy(model: ByteBert, ids: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model.classify(ids).argmax(-1) == labels).float().mean())


@torch.no_grad()
def mean_mlm(model: ByteBert, batches: list[dict]) -> float:
    model.eval()
    return float(np.mean([float(mlm_loss(model, b)) for b in batches]))


def pretrain(model: ByteBert, batches: list[dict], steps: int, lr: float) -> None:
    """theta_0: AdamW with a linear warm-up and cosine decay, one pass over ``batches`` per ``len`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    model.train()
    for step in range(steps):
        loss = mlm_loss(model, batches[step % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()


def no_layernorm(name: str, p: nn.Parameter) -> bool:
    return "LayerNorm" not in name


def language_params(name: str, p: nn.Parameter) -> bool:
    """The language SFT may change everything but LayerNorm and the task head (which MLM never reaches)."""
    return no_layernorm(name, p) and not name.startswith("head.")


def task_params(name: str, p: nn.Parameter) -> bool:
    """The task SFT may change everything but LayerNorm and the byte embeddings: in this toy an embedding row is
    language-specific (row b of the source is row perm[b] of the target), so a task change there would land on
    the wrong byte of the target language."""
    return no_layernorm(name, p) and "word_embeddings" not in name


def overlap(a, b) -> int:
    """Entries that two sparse differences share."""
    shared = (np.intersect1d(a.indices[n].numpy(), b.indices[n].numpy()).size for n in a.indices if n in b.indices)
    return int(sum(shared))


def run_k(model, k, data, args, seed) -> dict:
    """One language SFT and one task SFT with ``k`` entries each (0: dense), then the zero-shot evaluations."""
    n_lang = sum(p.numel() for n, p in model.named_parameters() if language_params(n, p))
    n_task = sum(p.numel() for n, p in model.named_parameters() if task_params(n, p))
    k_lang, k_task = (k, k) if k else (n_lang, n_task)
    phi_l = lt_sft(
        model, mlm_loss, data["lang"][seed], k_lang, args.lang_steps, lr=args.lr, filter=language_params,
        l1=0.1,
    )  # fmt: skip
    phi_t = lt_sft(model, task_loss, data["task"][seed], k_task, args.task_steps, lr=args.lr, filter=task_params)
    row = {"k": k or "dense", "seed": seed, "overlap": overlap(phi_l, phi_t)}
    h_t = apply_(model, phi_t)
    row["src_T"] = accuracy(model, data["src_test"], data["test_y"])
    row["tgt_T"] = accuracy(model, data["tgt_test"], data["test_y"])
    h_t.revert()
    h_l = apply_(model, phi_l)
    row["mlm_L"] = mean_mlm(model, data["tgt_valid"])
    h_t = apply_(model, phi_t)
    row["tgt_LT"] = accuracy(model, data["tgt_test"], data["test_y"])
    row["mlm_LT"] = mean_mlm(model, data["tgt_valid"])
    h_t.revert()
    h_l.revert()
    return row


def build_data(args) -> dict:
    corpus = load_stdlib("stdlib-code")
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(args.perm_seed))
    # disjoint windows for theta_0 (even) and the language SFT (odd): no text is seen in both languages
    train = windows(corpus.train, args.seq_len, 2 * args.batch * max(args.pretrain_steps, args.lang_steps))
    src_train, tgt_train = train[0::2], train[1::2][: args.batch * args.lang_steps]
    valid = windows(corpus.valid, args.seq_len, args.batch * 8)
    task = keyword_lines(train=args.task_train, test=args.task_test)
    (tr_x, tr_y), (te_x, te_y) = task["train"], task["test"]
    tr_ids, te_ids = lines(tr_x, 84), lines(te_x, 84)
    tr_y, te_y = torch.as_tensor(tr_y), torch.as_tensor(te_y)
    data = {"src_pretrain": mlm_batches(src_train, args.batch, seed=10_000), "src_test": te_ids, "test_y": te_y}
    data["tgt_test"] = permute(te_ids, perm)
    data["tgt_valid"] = mlm_batches(permute(valid, perm), args.batch, seed=20_000)
    data["src_valid"] = mlm_batches(valid, args.batch, seed=20_000)
    data["lang"], data["task"] = {}, {}
    for seed in args.seeds:
        order = torch.randperm(len(tr_ids), generator=torch.Generator().manual_seed(seed))
        data["lang"][seed] = mlm_batches(permute(tgt_train, perm), args.batch, seed=seed)
        data["task"][seed] = [
            {"ids": tr_ids[order[i : i + args.batch]], "labels": tr_y[order[i : i + args.batch]]}
            for i in range(0, len(order) - args.batch + 1, args.batch)
        ]
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[256, 4096, 0], help="0 = dense")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pretrain-steps", type=int, default=800)
    ap.add_argument("--lang-steps", type=int, default=100, help="steps per LT-SFT phase of the language SFT")
    ap.add_argument("--task-steps", type=int, default=60, help="steps per LT-SFT phase of the task SFT")
    ap.add_argument("--task-train", type=int, default=150, help="train lines per keyword")
    ap.add_argument("--task-test", type=int, default=30, help="held-out lines per keyword (valid has 32 'with')")
    ap.add_argument("--lr", type=float, default=1e-3, help="LT-SFT AdamW lr")
    ap.add_argument("--perm-seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = build_data(args)
    model = ByteBert(args.width, args.layers, len(KEYWORDS), seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data {time.perf_counter() - t0:.0f}s; model {n_params} parameters", flush=True)
    t1 = time.perf_counter()
    pretrain(model, data["src_pretrain"], args.pretrain_steps, lr=3e-3)
    print(
        f"theta_0: {args.pretrain_steps} MLM steps in {time.perf_counter() - t1:.0f}s; held-out MLM loss "
        f"source {mean_mlm(model, data['src_valid']):.3f}, target {mean_mlm(model, data['tgt_valid']):.3f} nats",
        flush=True,
    )
    rows = []
    for k in args.ks:
        for seed in args.seeds:
            t2 = time.perf_counter()
            rows.append(run_k(model, k, data, args, seed))
            r = rows[-1]
            print(
                f"k={r['k']} seed={seed}: acc src(T) {r['src_T']:.3f}  tgt(T) {r['tgt_T']:.3f}  tgt(L+T) "
                f"{r['tgt_LT']:.3f}  mlm tgt(L) {r['mlm_L']:.3f} (L+T) {r['mlm_LT']:.3f}  overlap {r['overlap']}  "
                f"({time.perf_counter() - t2:.0f}s)",
                flush=True,
            )
    chance = 1 / len(KEYWORDS)
    print(f"\nchance {chance:.3f}; {len(args.seeds)} seed(s); mean ± 95% t CI over seeds")
    print("| k | overlap / k | acc source, θ0+φT | acc target, θ0+φT | acc target, θ0+φL+φT | MLM target θ0+φL | "
          "MLM target θ0+φL+φT |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for k in args.ks:
        rs = [r for r in rows if r["k"] == (k or "dense")]
        denom = k or max(1, rs[0]["overlap"])
        cols = [mean_ci_text([r["overlap"] / denom for r in rs])] if k else [f"{rs[0]['overlap']} entries"]
        cols += [mean_ci_text([r[c] for r in rs]) for c in ("src_T", "tgt_T", "tgt_LT", "mlm_L", "mlm_LT")]
        print(f"| {k or 'dense'} | " + " | ".join(cols) + " |")
    print(f"total {time.perf_counter() - t0:.0f}s, torch {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
