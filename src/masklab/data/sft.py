"""Prompt/response pairs for supervised fine-tuning of a masked-diffusion LM (LLaDA, Nie et al. 2025, Sec. 2.3).

``data`` is a ``.jsonl`` file of ``{"prompt": ..., "response": ...}`` lines, or ``stdlib-sft``: every documented
function of the running interpreter's standard library as a pair (prompt: the docstring as an instruction;
response: the function's source), read with ``ast`` (nothing is imported).

Each pair becomes one row ``[prompt ids | response ids | EOS ...]`` of ``seq_len`` tokens: LLaDA pads the
response with EOS tokens, which count as response (the model learns where an answer ends). The examples tensor is
``[N, 1 + seq_len]``: column 0 holds the prompt length, the rest the ids. Pairs whose prompt leaves no room for a
response are dropped and counted; a response that does not fit is cut.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import torch

from masklab.data.stdlib import split_of, stdlib_files

__all__ = ["sft_pairs", "sft_examples", "stdlib_pairs", "STDLIB_SFT"]

STDLIB_SFT = "stdlib-sft"


def stdlib_pairs(
    root: str | None = None, max_prompt: int = 300, max_response: int = 600
) -> tuple[list[tuple[str, str]], list[str]]:
    """(pairs, file of each pair) from the stdlib's documented functions: "Write a Python function that does
    this: <first paragraph of the docstring>" -> the ``def`` line and the body after the docstring, dedented and
    cut to ``max_response`` characters."""
    pairs, names = [], []
    for rel, path in stdlib_files(root):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, OSError, SyntaxError, ValueError):
            continue
        lines = source.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body[1:]:
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 20:
                continue
            first = " ".join(doc.split("\n\n")[0].split())[:max_prompt]
            indent = node.col_offset
            signature = lines[node.lineno - 1 : node.body[0].lineno - 1]  # the def line(s), up to the docstring
            body = lines[node.body[1].lineno - 1 : node.end_lineno]
            response = "\n".join(ln[indent:] for ln in signature + body)[:max_response]
            pairs.append((f"Write a Python function that does this: {first}\n", response))
            names.append(rel)
    return pairs, names


def sft_pairs(data: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """(train pairs, valid pairs, fingerprint) of ``data`` (a ``.jsonl`` path or ``stdlib-sft``); the split is by
    a hash of each pair's source (its stdlib file, or its line of the .jsonl), so it is the same on every machine,
    and a held-out pair that also occurs in training is dropped."""
    if data == STDLIB_SFT:
        pairs, keys = stdlib_pairs()  # split by file, as the stdlib corpus is
    else:
        path = Path(data).expanduser()
        if not path.is_file() or path.suffix != ".jsonl":
            raise ValueError(f"data: SFT needs a .jsonl file of prompt/response pairs or {STDLIB_SFT!r}, got {data!r}")
        pairs, keys = [], []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"data: {path} line {i + 1} is not JSON: {e.msg}") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row.get("response"):
                raise ValueError(f"data: {path} line {i + 1} needs string fields 'prompt' and 'response'")
            pairs.append((row["prompt"], str(row["response"])))
            keys.append(f"{path.name}#{i}")
    if not pairs:
        raise ValueError(f"data: {data} holds no prompt/response pairs")
    digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:12]
    train = [p for p, k in zip(pairs, keys, strict=True) if split_of(k) == "train"]
    seen = set(train)
    valid = [p for p, k in zip(pairs, keys, strict=True) if split_of(k) == "valid" and p not in seen] or train[-1:]
    return train or valid, valid, f"sft-{digest}"


def sft_examples(pairs: list[tuple[str, str]], tokenizer, seq_len: int) -> tuple[torch.Tensor, int]:
    """([N, 1 + seq_len] examples, number of pairs dropped): column 0 the prompt length (BOS included when the
    tokenizer has one), then ``seq_len`` ids, the response padded with EOS."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError("SFT pads responses with EOS: the tokenizer has neither an EOS nor a SEP token")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    rows, dropped = [], 0
    enc = lambda texts: tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]  # noqa: E731
    for (prompt, _), p_ids, r_ids in zip(pairs, enc([p for p, _ in pairs]), enc([r for _, r in pairs]), strict=True):
        p_ids = ([bos] if bos is not None else []) + p_ids
        if len(p_ids) >= seq_len or not prompt.strip() and not r_ids:
            dropped += 1
            continue
        ids = (p_ids + r_ids + [eos])[:seq_len]
        rows.append([len(p_ids)] + ids + [eos] * (seq_len - len(ids)))
    if not rows:
        raise ValueError(f"no prompt leaves room for a response within seq_len={seq_len}")
    return torch.tensor(rows, dtype=torch.long), dropped
