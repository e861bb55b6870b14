"""Generative classification with a masked LM head: score candidate label words at a mask slot.

As ModernBERT-Large-Instruct (Clavié et al. 2025, "It's All in The [MASK]") does with single-token answers,
the label is read off the MLM head at a ``<mask>`` slot in the text, with no classifier head and no
fine-tuning. Labels of several tokens are scored exactly under the model by the chain rule: the slot is
widened to the label's length and the label's tokens are revealed left to right, one model call per token,
summing log p(token | context, tokens so far). ``normalize="mean"`` divides by the label's length (labels of
different lengths otherwise favour short ones); ``"sum"`` keeps the total.

``masklab classify`` runs either one text (``--text "... <mask> ..." --labels a,b,c``) or the built-in stdlib
task (``--task stdlib-keywords``, :func:`masklab.data.stdlib_tasks.keyword_task`): which Python keyword starts a
line of held-out stdlib code, given the code around it, against the majority-class baseline.
"""

from __future__ import annotations

import torch

from masklab.data.stdlib_tasks import SLOT
from masklab.sample.generate import as_model_fn

__all__ = ["score_labels", "classify"]


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def score_labels(
    model,
    tokenizer,
    texts: list[str],
    labels: list[str],
    *,
    normalize: str = "mean",
    max_len: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """[N, C] log-score of each label at the single ``<mask>`` slot of each text (higher is more likely)."""
    if normalize not in ("mean", "sum"):
        raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token")
    if not labels:
        raise ValueError("no candidate labels given")
    max_len = max_len or getattr(getattr(model, "config", None), "max_position_embeddings", None) or 512
    lab = [_encode(tokenizer, w) for w in labels]
    if any(len(ids) == 0 for ids in lab):
        raise ValueError(f"a label encodes to no tokens: {labels}")
    rows, slots, targets, owners = [], [], [], []
    for i, text in enumerate(texts):
        if text.count(SLOT) != 1:
            raise ValueError(f"text {i} must hold exactly one {SLOT} slot, found {text.count(SLOT)}")
        pre, post = (_encode(tokenizer, part) for part in text.split(SLOT))
        for c, ids in enumerate(lab):
            room = max_len - len(ids)
            keep_pre = min(len(pre), max(room // 2, room - len(post)))
            p = pre[len(pre) - keep_pre :] if keep_pre > 0 else []
            rows.append(p + [mask_id] * len(ids) + post[: room - len(p)])
            slots.append(len(p))
            targets.append(ids)
            owners.append((i, c))
    fn = as_model_fn(model)
    total = torch.zeros(len(rows), dtype=torch.float64)
    for start in range(0, len(rows), batch_size):
        chunk = range(start, min(start + batch_size, len(rows)))
        L = max(len(rows[r]) for r in chunk)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else mask_id
        x = torch.tensor([rows[r] + [pad] * (L - len(rows[r])) for r in chunk])
        m = max(len(targets[r]) for r in chunk)
        tgt = torch.tensor([targets[r] + [0] * (m - len(targets[r])) for r in chunk])  # (b, m)
        n_tok = torch.tensor([len(targets[r]) for r in chunk])
        pos0 = torch.tensor([slots[r] for r in chunk])
        b = torch.arange(len(chunk))
        for j in range(m):  # reveal the label left to right: chain rule, one call per label token
            logp = fn(x).float().log_softmax(-1)  # (b, L, V)
            on = j < n_tok
            pos = (pos0 + j).clamp(max=L - 1)
            total[start : start + len(chunk)] += torch.where(on, logp[b, pos, tgt[:, j]], 0.0).double()
            x[b[on], pos[on]] = tgt[on, j]
    lens = torch.tensor([len(t) for t in targets], dtype=torch.float64)
    score = total / lens if normalize == "mean" else total
    out = torch.empty(len(texts), len(labels), dtype=torch.float64)
    for (i, c), s in zip(owners, score, strict=True):
        out[i, c] = s
    return out


def classify(model, tokenizer, texts, labels, **kw) -> list[str]:
    """The best-scoring label for each text."""
    return [labels[i] for i in score_labels(model, tokenizer, texts, labels, **kw).argmax(1).tolist()]
