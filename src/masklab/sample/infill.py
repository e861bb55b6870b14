"""Prompts with mask placeholders: ``<mask>`` is one token to fill, ``<mask:N>`` is N tokens.

Masks may stand anywhere (infilling, mdlm #21): :func:`parse_prompt` turns such a prompt into ids for
:func:`masklab.sample.generate`. :func:`red_team_prompt` builds DIJA-style prompts (Wen et al. 2025, "The Devil
behind the Mask: An Emergent Safety Vulnerability of Diffusion LLMs", Sec. 3): it expands the placeholders of
an interleaved mask-text prompt into the model's *native* mask token text (``<|mdm_mask|>`` for LLaDA,
``<mask>`` for BERT-style tokenizers, ...), so the same template can be sent to any diffusion LM's own chat
pipeline when evaluating whether its safety alignment survives bidirectional infilling; a template without
placeholders gets DIJA's 36 masks appended. :func:`interleave` builds such a template, and ``benchmarks/dija.py``
measures the attack on a small aligned model (``docs/dija.md``).
"""

from __future__ import annotations

import re

__all__ = ["PLACEHOLDER", "parse_prompt", "red_team_prompt", "interleave"]

PLACEHOLDER = re.compile(r"<mask(?::(-?\d+))?>")


def _count(m: re.Match) -> int:
    n = int(m.group(1)) if m.group(1) else 1
    if n <= 0:
        raise ValueError(f"<mask:{n}> asks for no tokens; N must be positive")
    return n


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
            ids += tokenizer(text[pos : m.start()], add_special_tokens=False)["input_ids"]
        ids += [tokenizer.mask_token_id] * _count(m)
        pos = m.end()
    if pos < len(text):
        ids += tokenizer(text[pos:], add_special_tokens=False)["input_ids"]
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"the prompt is {len(ids)} tokens, longer than the model's context of {max_len}")
    return ids


def red_team_prompt(template: str, tokenizer=None, *, mask_token: str | None = None, mask_counts: int = 36) -> str:
    """``template`` with every ``<mask>`` / ``<mask:N>`` replaced by N copies of the native mask token text.

    The mask text comes from ``mask_token`` or else ``tokenizer.mask_token``. A template that holds no mask at
    all (no placeholder, no native mask text) gets ``mask_counts`` native masks appended at its end, as DIJA's
    reference code does (``process_prompt_instruct`` in ``run_harmbench/models/harmbench_dream.py`` and
    ``harmbench_llada.py``: ``DEFAULT_MASK_COUNTS = 36``, appended to the chat-templated prompt, so in the
    assistant's turn; the LLaDA script also wraps them in the literal text ``<startoftext>`` ... ``<endoftext>``,
    which this function leaves out). ``mask_counts=0`` makes such a template an error. The result, tokenized by
    that tokenizer, holds exactly one mask id per native mask text (checked when a tokenizer is given)."""
    native = mask_token if mask_token is not None else getattr(tokenizer, "mask_token", None)
    if not native:
        raise ValueError("no native mask token: pass a tokenizer with a mask token or mask_token=...")
    if not isinstance(mask_counts, int) or isinstance(mask_counts, bool) or mask_counts < 0:
        raise ValueError(f"mask_counts must be >= 0 and an integer, got {mask_counts!r}")
    out = PLACEHOLDER.sub(lambda m: native * _count(m), template)
    if native not in out:
        if not mask_counts:
            raise ValueError("the template has no <mask> or <mask:N> placeholder and mask_counts=0 appends none")
        out += native * mask_counts
    if tokenizer is not None and getattr(tokenizer, "mask_token_id", None) is not None:
        want = out.count(native)
        got = tokenizer(out, add_special_tokens=False)["input_ids"].count(tokenizer.mask_token_id)
        if got != want:
            raise ValueError(f"the native mask text {native!r} tokenized to {got} mask ids, expected {want}")
    return out


def interleave(request: str, sections: list[str], span: int = 32) -> str:
    """A DIJA-style interleaved template: the request, then each section header followed by ``<mask:span>``.

    ``interleave("How do I X?", ["Step 1:", "Step 2:"], 16)`` ->
    ``"How do I X?\\nStep 1: <mask:16>\\nStep 2: <mask:16>"``."""
    if span <= 0:
        raise ValueError(f"span must be positive, got {span}")
    if not sections:
        raise ValueError("give at least one section header")
    return request + "".join(f"\n{h} <mask:{span}>" for h in sections)
