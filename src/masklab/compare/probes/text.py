"""Text probes, on the stdlib tasks of :mod:`masklab.data.stdlib_tasks` (test examples from the corpus's valid files,
which no run trains on).

- ``keyword`` / ``module``: a logistic regression on the frozen model's mean-pooled last hidden states names the
  removed keyword of a line of code (8 classes) / the package of a docstring (up to 8); accuracy in percent.
- ``keyword-ft`` / ``module-ft``: a short full fine-tune of the checkpoint with a fresh classification head (the
  ``finetune`` recipe: 60 steps of 32, lr 1e-3, seed 0, the same for every run); accuracy in percent.
- ``tagging``: a logistic regression on the frozen per-token features names each identifier's role (def, use,
  attr) at its last token; balanced classes (chance 33.3%).
- ``nll``: the held-out NLL in bits per token of a generative run (MDM: the ELBO bound).
- ``retrieval``: exact-match key-value retrieval of a causal run trained on ``data=kv-retrieval``
  (:mod:`masklab.data.kv_retrieval`), overall and by needle position.
- ``task-acc``: the held-out accuracy of a ``finetune`` run's own head (its recipe fixes the task).
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from masklab.compare.probes.base import PROBE, Probe
from masklab.data import stdlib_tasks as T

__all__ = ["text_features", "token_features"]

FT_STEPS = 60  # the fine-tune probes' length: a short fine-tune of the whole model
FT_LR = 1e-3  # for masklab's small models; the same for every run a comparison probes
TAG_PER_CLASS = {"train": 400, "test": 200}  # identifier tokens per role


def _load(folder: Path):
    """(model, tokenizer) of a checkpoint, loaded once per version of its files (the probes of one point share
    it)."""
    from masklab.train import checkpoint

    folder = checkpoint.load(folder, model=False).folder  # verified against its manifest
    return _load_version(str(folder), tuple(p.stat().st_mtime_ns for p in sorted(folder.glob("*.safetensors"))))


@lru_cache(maxsize=1)
def _load_version(folder: str, version: tuple):
    from masklab.train import checkpoint

    loaded = checkpoint.load(folder)
    if loaded.tokenizer is None:
        raise ValueError(f"{folder} holds no tokenizer, which the text probes need")
    return loaded.model.eval(), loaded.tokenizer


def _hidden(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, L, D] last hidden states."""
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
    return out.hidden_states[-1].float().cpu()


@torch.no_grad()
def text_features(model, tokenizer, lines: list[str], max_len: int = 48, batch: int = 64) -> np.ndarray:
    """[N, D] mean of the last hidden states over each text's tokens (no special tokens added)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_len] or [0] for t in lines]
    feats = []
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        x = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long)
        m = torch.zeros_like(x)
        for j, row in enumerate(chunk):
            x[j, : len(row)], m[j, : len(row)] = torch.tensor(row), 1
        h, w = _hidden(model, x, m), m[..., None].float()
        feats.append((h * w).sum(1) / w.sum(1))
    return torch.cat(feats).numpy()


@torch.no_grad()
def token_features(model, tokenizer, lines, max_len: int = 64, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """([T, D] last hidden states of the labelled tokens, [T] their roles) of ``(line, spans)`` pairs."""
    ids, labels = T.label_tokens(tokenizer, lines, max_len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    feats, ys = [], []
    for i in range(0, len(ids), batch):
        x, y = ids[i : i + batch], labels[i : i + batch]
        h = _hidden(model, x, (x != pad).long())
        feats.append(h[y != -100])
        ys.append(y[y != -100])
    return torch.cat(feats).numpy(), torch.cat(ys).numpy()


def _balanced(f: np.ndarray, y: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    return f[keep], y[keep]


def keyword(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    model, tok = _load(folder)
    (tr, ytr), (te, yte) = T.keyword_lines()["train"], T.keyword_lines()["test"]
    n = min(48, recipe.seq_len)
    return {
        "keyword_acc": 100.0
        * linear_probe(text_features(model, tok, tr, n), ytr, text_features(model, tok, te, n), yte)
    }


def module(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    model, tok = _load(folder)
    _, d = T.docstring_families()
    (tr, ytr), (te, yte) = d["train"], d["test"]
    n = min(96, recipe.seq_len)
    return {
        "module_acc": 100.0 * linear_probe(text_features(model, tok, tr, n), ytr, text_features(model, tok, te, n), yte)
    }


def tagging(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    model, tok = _load(folder)
    n = min(64, recipe.seq_len)
    tr = _balanced(*token_features(model, tok, T.identifier_roles("train", 1500), n), TAG_PER_CLASS["train"])
    te = _balanced(*token_features(model, tok, T.identifier_roles("valid", 600), n), TAG_PER_CLASS["test"])
    return {"tagging_acc": 100.0 * linear_probe(*tr, *te)}


def _finetuned_accuracy(folder: Path, task: str) -> float:
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    overrides = [f"init={folder}", f"task={task}", f"steps={FT_STEPS}", f"lr={FT_LR}", "warmup=6", "seed=0"]
    r = apply_overrides(get_recipe("finetune"), overrides)
    with tempfile.TemporaryDirectory(prefix="probe-ft-") as tmp:
        summary = train(r, tmp, progress=False)
    return 100.0 * float(summary["eval"]["acc"])


def keyword_ft(folder: Path, recipe) -> dict[str, float]:
    return {"keyword_ft_acc": _finetuned_accuracy(folder, "keyword")}


def module_ft(folder: Path, recipe) -> dict[str, float]:
    return {"module_ft_acc": _finetuned_accuracy(folder, "module")}


def nll(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(folder, device="cpu" if not torch.cuda.is_available() else None)
    return {"nll_bits": float(result.get("nll_bound_bits", result.get("bits")))}


def task_acc(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.evaluate import evaluate_checkpoint

    return {"task_acc": 100.0 * float(evaluate_checkpoint(folder, device="cpu")["acc"])}


@torch.no_grad()
def retrieval(folder: Path, recipe) -> dict[str, float]:
    """Exact-match accuracy of the last query's value on 420 fresh key-value documents (its needle cycling over the
    pairs), overall and by where the needle sits: the first, middle and last third of the pairs. One teacher-
    forced forward: greedy decoding is exact iff the argmax is right at each of the value's tokens."""
    from masklab.data.kv_retrieval import PAIRS, VALUE_CHARS, kv_examples

    model, tok = _load(folder)
    docs, needle = kv_examples(420, seed=1)
    ids = torch.tensor([tok(d, add_special_tokens=False)["input_ids"] for d in docs])  # (N, 127): one per byte
    v = VALUE_CHARS
    hits = []
    for i in range(0, len(ids), 64):
        x = ids[i : i + 64]
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits  # (b, L, V)
        pred = logits[:, -v - 1 : -1].argmax(-1)  # next-token predictions for the value's characters
        hits.append((pred == x[:, -v:]).all(1))
    hit = torch.cat(hits).numpy()
    third = np.minimum(needle * 3 // PAIRS, 2)
    out = {"retrieval_acc": 100.0 * hit.mean()}
    out.update({f"retrieval_acc_{w}": 100.0 * hit[third == k].mean() for k, w in enumerate(("early", "mid", "late"))})
    return out


def _causal_kv(recipe) -> bool:
    from masklab.train.recipes.ar import ARRecipe
    from masklab.train.recipes.meap import MEAPRecipe

    return isinstance(recipe, (ARRecipe, MEAPRecipe)) and recipe.data == "kv-retrieval"


def _generative(recipe) -> bool:
    from masklab.train.recipes.ar import ARRecipe
    from masklab.train.recipes.mdm import MDMRecipe

    return isinstance(recipe, (ARRecipe, MDMRecipe))


def _finetune_run(recipe) -> bool:
    from masklab.train.recipes.finetune import FinetuneRecipe

    return isinstance(recipe, FinetuneRecipe)


for name, summary, probe in [
    ("keyword", "text: linear probe, line of stdlib code -> its removed leading keyword (8 classes)",
     Probe("text", {"keyword_acc": True}, keyword)),
    ("keyword-ft", f"text: {FT_STEPS}-step full fine-tune with a classification head, line -> removed keyword",
     Probe("text", {"keyword_ft_acc": True}, keyword_ft)),
    ("module", "text: linear probe, stdlib docstring -> its top-level package (up to 8 classes)",
     Probe("text", {"module_acc": True}, module)),
    ("module-ft", f"text: {FT_STEPS}-step full fine-tune with a classification head, docstring -> package",
     Probe("text", {"module_ft_acc": True}, module_ft)),
    ("tagging", "text: per-token linear probe, identifier role in a line of code (def / use / attr)",
     Probe("text", {"tagging_acc": True}, tagging)),
    ("nll", "text, generative runs: held-out NLL in bits per token (MDM: the ELBO bound)",
     Probe("text", {"nll_bits": False}, nll, "a generative run (mdm*, ar)", _generative)),
    ("retrieval", "text, causal runs on data=kv-retrieval: exact-match value retrieval by needle position",
     Probe("text", {f"retrieval_acc{w}": True for w in ("", "_early", "_mid", "_late")}, retrieval,
           "a causal run (ar, meap) on data=kv-retrieval", _causal_kv)),
    ("task-acc", "text, finetune runs: held-out accuracy of the run's own head on its task",
     Probe("text", {"task_acc": True}, task_acc, "a finetune run", _finetune_run)),
]:  # fmt: skip
    PROBE.register(name, summary, probe)
