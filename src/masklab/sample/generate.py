"""``generate``: fill every masked position of ``input_ids`` with a masked-diffusion sampler."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from masklab.corrupt import keyed
from masklab.objectives.base import logits_of
from masklab.sample.samplers import SAMPLER
from masklab.sample.samplers._decode import DecodeOptions

DECODER_OPTIONS = {f.name for f in fields(DecodeOptions)}  # every sampler takes these

__all__ = ["generate", "Generation", "row_keys", "as_model_fn", "batch_prompts", "checked"]


@dataclass
class Generation:
    ids: torch.Tensor  # [B, L] filled ids
    order: torch.Tensor  # [B, L] step at which each position was revealed; -1 for prompt tokens
    steps: int  # steps the sampler was given (the largest over rows; = model calls at most, except ancestral)
    nfe: int = 0  # model calls made (a CFG step counts 2)
    stats: dict | None = None  # sampler extras, e.g. FHS reveal times


def row_keys(seed: int | Sequence[int] | torch.Tensor | None, batch: int, device=None) -> torch.Tensor:
    """Per-row keys: one seed per row (the row's output then does not depend on its batch), or one seed for
    all rows (row r then draws from stream (seed, r))."""
    if seed is None:
        seed = 0
    if isinstance(seed, int):
        return keyed.example_keys(seed, 0, torch.arange(batch), device)
    seeds = torch.as_tensor(seed, dtype=torch.int64)
    if seeds.numel() != batch:
        raise ValueError(f"got {seeds.numel()} seeds for {batch} rows")
    return keyed.derive(seeds.to(device), keyed.Stream.BATCH)


def as_model_fn(model, pad_id: int | None = None):
    """A callable ids -> logits [B, L, V], for an HF model or any callable returning logits.

    With ``pad_id`` an HF model gets ``attention_mask = ids != pad_id`` (always, so a row is computed the same
    way whether or not its batch holds padding). A model's ``every_row`` flag (send it every row of the batch,
    also rows left without a mask) is kept."""

    def fn(x):
        with torch.no_grad():
            if hasattr(model, "config"):
                kw = {"attention_mask": (x != pad_id).long()} if pad_id is not None else {}
                return logits_of(model(input_ids=x, **kw))
            return logits_of(model(x))

    fn.every_row = getattr(model, "every_row", False)
    return fn


def batch_prompts(
    prompts: Sequence[Sequence[int]],
    n_masks: int,
    *,
    mask_id: int | None,
    pad_id: int,
    suffix: Sequence[int] = (),
) -> torch.Tensor:
    """[B, L] ids: each prompt, then ``n_masks`` mask tokens (the number to append, not a total length), then
    ``suffix``, right-padded with ``pad_id``.

    Right padding keeps every row's positions what they would be alone; pass the same ``pad_id`` to
    :func:`generate` so the padding is excluded from attention."""
    _check_mask_id(mask_id)
    if n_masks <= 0:
        raise ValueError(f"n_masks: the generation length must be positive, got {n_masks}")
    rows = [list(p) + [mask_id] * n_masks + list(suffix) for p in prompts]
    if not rows:
        raise ValueError("no prompts given")
    L = max(map(len, rows))
    return torch.tensor([r + [pad_id] * (L - len(r)) for r in rows], dtype=torch.long)


def generate(
    model,
    input_ids: torch.Tensor,
    *,
    mask_id: int | None,
    sampler: str = "confidence",
    steps: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    seed=None,
    top_k: int | None = None,
    top_p: float | None = None,
    return_order: bool = False,
    **options,
):
    """Fill every position of ``input_ids`` [B, L] (or [L]) that equals ``mask_id``.

    ``sampler``: a name in :data:`SAMPLER` (ancestral, confidence, fhs, threshold, remdm, mask_predict).
    ``seed``: an int (row r uses stream (seed, r)) or one int per row (a row's output is then independent of its
    batch), or None (= 0).

    ``steps`` (an int, or one per row) defaults to each row's number of masked tokens (one token per step).
    For ``confidence`` more steps than a row's masked tokens are clamped to that count, since a step that
    commits nothing changes nothing; ``ancestral`` and ``remdm`` take their time steps as given, ``mask_predict``
    its iterations; ``fhs`` and ``threshold`` choose their own.

    ``options`` (every sampler): ``block_length`` (semi-autoregressive blocks), ``cfg_scale`` (classifier-free
    guidance; the unconditional pass masks the prompt), ``eos_id`` / ``fill_id`` (a row stops at its first
    generated EOS), ``pad_id`` (padding: excluded from attention, never filled). Sampler-specific:
    ``remasking`` and ``alg_temp`` (confidence), ``threshold`` (threshold), ``schedule``, ``eta``, ``t_on``,
    ``t_off`` and ``alpha_on`` (remdm).

    Returns the ids, or a :class:`Generation` (ids, reveal order, NFE) when ``return_order`` is set.
    """
    run, x, steps_t = checked(input_ids, mask_id=mask_id, sampler=sampler, steps=steps, temperature=temperature,
                              options=options)  # fmt: skip
    n = (x == mask_id).sum(1)
    order = torch.where(x == mask_id, 0, -1).to(torch.long)
    stats: dict = {}
    out = run(
        as_model_fn(model, options.get("pad_id")),
        x,
        mask_id=mask_id,
        steps=steps_t,
        keys=row_keys(seed, x.shape[0], x.device),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        order=order,
        stats=stats,
        **options,
    )
    if input_ids.dim() == 1:
        out, order = out[0], order[0]
    if not return_order:
        return out
    used = int(torch.minimum(steps_t, n).max()) if sampler == "confidence" else int(steps_t.max())
    return Generation(out, order, used, stats.get("nfe", 0), stats)


def checked(input_ids: torch.Tensor, *, mask_id, sampler: str, steps, temperature: float, options: dict):
    """(sampler function, ids [B, L], steps [B]) of a generation call once its arguments pass their checks:
    a mask id, a registered sampler taking every option, a non-empty batch holding a mask, positive steps (one
    per masked token when None) and a temperature >= 0. Each failure is one ValueError naming the argument."""
    _check_mask_id(mask_id)
    run = _sampler(sampler, options)
    x = _rows(input_ids, mask_id)
    steps_t = (x == mask_id).sum(1) if steps is None else _steps(steps, x.shape[0], x.device)
    _check_temperature(temperature)
    return run, x, steps_t


def _check_mask_id(mask_id: int | None) -> None:
    if mask_id is None:
        raise ValueError("mask_id is missing: the tokenizer or model has no mask token")


def _sampler(name: str, options: dict) -> Callable:
    """The sampler registered as ``name``, once it is known to take every one of ``options``: the
    :class:`DecodeOptions` fields and its own keyword options (``remasking``, ``threshold``, ...)."""
    fn = SAMPLER.get(name)
    own = {
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
    }
    takes = DECODER_OPTIONS | own
    for k in options:
        if k not in takes:
            raise ValueError(f"sampler {name!r} does not take option {k!r}; it takes {sorted(takes)}")
    return fn


def _rows(input_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``input_ids`` as a non-empty [B, L] batch (an [L] row becomes [1, L]) holding at least one mask."""
    x = input_ids[None] if input_ids.dim() == 1 else input_ids
    if x.dim() != 2 or 0 in x.shape:
        raise ValueError(f"input_ids must be a non-empty [B, L] tensor, got shape {tuple(input_ids.shape)}")
    if not bool((x == mask_id).any()):
        raise ValueError("input_ids hold no mask token: nothing to generate (generation length 0)")
    return x


def _steps(steps: int | Sequence[int], rows: int, device) -> torch.Tensor:
    """[rows] positive step counts from one count for every row or one per row."""
    steps_t = torch.as_tensor(steps, dtype=torch.long, device=device).flatten()
    if steps_t.numel() not in (1, rows):
        raise ValueError(f"got {steps_t.numel()} step counts for {rows} rows")
    steps_t = steps_t.expand(rows)
    if int(steps_t.min()) <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    return steps_t


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0:  # NaN fails too
        raise ValueError(f"temperature must be >= 0, got {temperature}")
