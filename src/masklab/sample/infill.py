"""Prompts with mask placeholders: ``<mask>`` is one token to fill, ``<mask:N>`` is N tokens."""

from __future__ import annotations

import re

__all__ = ["PLACEHOLDER", "parse_prompt"]

PLACEHOLDER = re.compile(r"<mask(?::(\d+))?>")


def parse_prompt(text: str, tokenizer, max_len: int | None = None) -> list[int]:
    """Token ids of ``text`` with each placeholder expanded to the tokenizer's mask id."""
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token")
    if not PLACEHOLDER.search(text):
        raise ValueError("the prompt has no mask placeholder: write <mask> or <mask:N> where text should be filled")
    ids: list[int] = []
    pos = 0
    for m in PLACEHOLDER.finditer(text):
        if m.start() > pos:
            ids += tokenizer(text[pos:m.start()], add_special_tokens=False)["input_ids"]
        n = int(m.group(1)) if m.group(1) else 1
        if n <= 0:
            raise ValueError(f"<mask:{n}> asks for no tokens; N must be positive")
        ids += [tokenizer.mask_token_id] * n
        pos = m.end()
    if pos < len(text):
        ids += tokenizer(text[pos:], add_special_tokens=False)["input_ids"]
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context of {max_len}")
    return ids
