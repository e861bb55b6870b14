"""The probes of ``masklab compare``: each reads a trained checkpoint and returns its metrics. Every run of a modality
meets the same probes on the same held-out data, so their numbers compare.

- ``keyword`` (text): a line of stdlib code with its leading keyword removed (``def f(x):`` -> ``f(x):``); a
  logistic regression on the frozen encoder's mean-pooled last hidden states names the keyword (8 classes,
  balanced; probe-train lines from the corpus's train files, probe-test lines from its valid files, which no run
  trains on). Accuracy in percent.
- ``nll`` (text, generative runs: MDM, AR): the held-out NLL in bits per token (MDM: the ELBO bound).
- ``digits-linear`` / ``digits-knn`` (images): logistic regression / cosine k-NN (k = 10) on the mean-pooled
  encoder features of the digits train split, scored on its 450 test images (MAE's and DINO's evaluations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from masklab.registry import Registry

__all__ = ["PROBE", "Probe", "check_fits", "KEYWORDS", "keyword_lines"]


@dataclass(frozen=True)
class Probe:
    modality: str  # the recipes' modality it reads (text, image)
    metrics: dict[str, bool]  # metric -> whether higher is better
    run: Callable[[Path, object], dict[str, float]]  # (checkpoint folder, recipe) -> metrics
    needs: str = ""  # what a run must be, beyond its modality ("" = any run of the modality)
    fits: Callable[[object], bool] | None = None

    def __call__(self, folder: Path, recipe) -> dict[str, float]:
        return self.run(folder, recipe)


PROBE = Registry("probe", "probes: Probe(modality, metrics, run(checkpoint folder, recipe) -> {metric: value})")


def check_fits(probe: str, recipe) -> None:
    """A ValueError naming both when ``probe`` cannot read a run of ``recipe``."""
    p = PROBE.get(probe)
    if recipe.modality != p.modality:
        raise ValueError(f"probe {probe!r} reads {p.modality} runs; {recipe.name!r} is a {recipe.modality} recipe")
    if p.fits is not None and not p.fits(recipe):
        raise ValueError(f"probe {probe!r} needs {p.needs}; {recipe.name!r} is not one")


# ------------------------------------------------------------------------------------------------- text
KEYWORDS = ("def", "return", "if", "for", "import", "raise", "class", "with")
PER_CLASS = {"train": 60, "test": 25}


@lru_cache(maxsize=2)
def keyword_lines(root: str | None = None) -> dict[str, tuple[list[str], np.ndarray]]:
    """{"train" | "test": (lines without their keyword, keyword index)}, balanced and fixed (not seed dependent)."""
    from masklab.data.stdlib import split_of, stdlib_files

    by = {s: {k: [] for k in KEYWORDS} for s in ("train", "valid")}
    for rel, path in stdlib_files(root):
        split = split_of(rel)
        for line in path.read_text(errors="replace").splitlines():
            head, _, rest = line.strip().partition(" ")
            rest = rest.strip()
            if head in by[split] and 3 <= len(rest) <= 80:
                by[split][head].append(rest)
    out = {}
    rng = np.random.default_rng(0)  # a fixed selection of probe data, the same for every run
    for name, split in (("train", "train"), ("test", "valid")):
        lines, labels = [], []
        for label, k in enumerate(KEYWORDS):
            pool = sorted(set(by[split][k]))
            if len(pool) < PER_CLASS[name]:
                raise ValueError(f"keyword probe: only {len(pool)} {k!r} lines in the {split} files")
            lines += [pool[i] for i in rng.choice(len(pool), PER_CLASS[name], replace=False)]
            labels += [label] * PER_CLASS[name]
        out[name] = (lines, np.array(labels))
    return out


@torch.no_grad()
def text_features(model, tokenizer, lines: list[str], max_len: int = 48, batch: int = 64) -> np.ndarray:
    """[N, D] mean of the last hidden states over each line's tokens (no special tokens added)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_len] or [0] for t in lines]
    device = next(model.parameters()).device
    feats = []
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        width = max(map(len, chunk))
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        m = torch.zeros(len(chunk), width, dtype=torch.long)
        for j, row in enumerate(chunk):
            x[j, : len(row)], m[j, : len(row)] = torch.tensor(row), 1
        out = model(input_ids=x.to(device), attention_mask=m.to(device), output_hidden_states=True)
        h, w = out.hidden_states[-1].float(), m.to(device)[..., None].float()
        feats.append(((h * w).sum(1) / w.sum(1)).cpu())
    return torch.cat(feats).numpy()


def _load(folder: Path):
    from masklab.train import checkpoint

    loaded = checkpoint.load(folder)
    if loaded.tokenizer is None:
        raise ValueError(f"{folder} holds no tokenizer, which the text probes need")
    return loaded.model.eval(), loaded.tokenizer


def keyword(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    model, tok = _load(folder)
    data = keyword_lines()
    max_len = min(48, recipe.seq_len)
    (tr, ytr), (te, yte) = data["train"], data["test"]
    acc = linear_probe(text_features(model, tok, tr, max_len), ytr, text_features(model, tok, te, max_len), yte)
    return {"keyword_acc": 100.0 * acc}


def nll(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(folder, device="cpu" if not torch.cuda.is_available() else None)
    return {"nll_bits": float(result.get("nll_bound_bits", result.get("bits")))}


def _generative(recipe) -> bool:
    from masklab.train.recipes.ar import ARRecipe
    from masklab.train.recipes.mdm import MDMRecipe

    return isinstance(recipe, (ARRecipe, MDMRecipe))


PROBE.register("keyword", "text: linear probe, line of stdlib code -> its removed leading keyword (8 classes)",
               Probe("text", {"keyword_acc": True}, keyword))  # fmt: skip
PROBE.register("nll", "text, generative runs: held-out NLL in bits per token (MDM: the ELBO bound)",
               Probe("text", {"nll_bits": False}, nll, "a generative run (mdm*, ar)", _generative))  # fmt: skip


# ----------------------------------------------------------------------------------------------- images
def _digit_features(folder: Path, recipe):
    from masklab.data.digits import N_TRAIN, digits_images
    from masklab.train import checkpoint

    model = checkpoint.load(folder).model.eval()
    x, y = digits_images(recipe.image_size)
    f = model.features(x).numpy()
    return f[:N_TRAIN], y[:N_TRAIN].numpy(), f[N_TRAIN:], y[N_TRAIN:].numpy()


def digits_linear(folder: Path, recipe) -> dict[str, float]:
    from masklab.train.probe import linear_probe

    return {"digits_linear_acc": 100.0 * linear_probe(*_digit_features(folder, recipe))}


def digits_knn(folder: Path, recipe, k: int = 10) -> dict[str, float]:
    from sklearn.neighbors import KNeighborsClassifier

    ftr, ytr, fte, yte = _digit_features(folder, recipe)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(ftr, ytr)
    return {"digits_knn_acc": 100.0 * float(knn.score(fte, yte))}


PROBE.register("digits-linear", "images: logistic regression on frozen mean-pooled encoder features, digits test",
               Probe("image", {"digits_linear_acc": True}, digits_linear))  # fmt: skip
PROBE.register("digits-knn", "images: cosine 10-NN on frozen mean-pooled encoder features, digits test split",
               Probe("image", {"digits_knn_acc": True}, digits_knn))  # fmt: skip
