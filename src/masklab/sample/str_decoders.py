"""MDiff4STR's six decoders (Masked Diffusion for Scene Text Recognition, Sec. 3.3; OpenOCR
``openrec/modeling/decoders/mdiff_decoder.py``, the ``forward_*_decoding`` methods), one signature for all:

    decoder(model_fn, shape, *, mask_id, eos_id, steps, keys=None, temperature=1.0) -> Decoded

``model_fn(ids [B, L]) -> logits [B, L, C]`` over the C output classes: every id below C is a class, and the mask
id is not one (the reference's ``tgt_word_prj`` has out_channels - 2 outputs: no <mask>, no <pad>). ``shape`` is
(B, L); every decoder starts from L masks per row. Each returns the probabilities the reference returns: for each
position the softmax of the pass in which it was last masked (a committed token keeps the probabilities it was
committed with), and the number of model calls. The text is the argmax up to the first EOS (:func:`strings`).

=====================  =================================================================  ======================
decoder                rule per pass                                                      passes
=====================  =================================================================  ======================
parallel               predict every position at once                                     1
autoregressive         commit position i (left to right); stop when every row has an EOS  <= L
low_confidence         commit the still-masked positions before the first predicted EOS   <= steps
                       whose confidence is above their mean (the mean-confidence rule)
random                 commit each such position with probability 1/2 (keyed)             <= steps
semi_autoregressive    the mean-confidence rule inside a growing window of L // steps     <= steps
                       positions per step (the reference's block schedule)
cloze                  a parallel pass, then re-predict position i with only it masked,   <= L + 1
                       left to right, until every row's re-predicted prefix has an EOS
=====================  =================================================================  ======================

The three committing decoders stop one pass after every row has at most one valid masked position left, as the
reference does. A row whose prediction holds no EOS commits nothing in that pass (the reference's
``get_masked_indice_after_eos`` marks the whole row as "after EOS"), so its output is the latest full prediction.
Deliberate difference: the reference's cloze decoder starts its output from ``torch.rand`` and stops when the
argmax of that buffer (random numbers at positions not yet re-predicted) holds an EOS; here the buffer starts
from the parallel pass and the stop reads the re-predicted prefix only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from masklab.corrupt import keyed
from masklab.registry import Registry

__all__ = ["STR_DECODER", "Decoded", "strings", "after_eos"]

STR_DECODER = Registry(
    "str-decoder", "scene-text decoders: (model_fn, shape, *, mask_id, eos_id, steps, keys, temperature) -> Decoded"
)
_RANDOM_SALT = 0x5D0C  # keyed.derive salt of the random decoder's per-pass draws


@dataclass
class Decoded:
    probs: torch.Tensor  # [B, L, C] each position's probabilities from the pass in which it was last masked
    passes: int  # model calls

    @property
    def ids(self) -> torch.Tensor:
        return self.probs.argmax(-1)


def strings(ids: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Each row of ``ids`` [B, L] up to (not including) its first EOS."""
    out = []
    for row in ids.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


def after_eos(pred: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B, L] True after each row's first EOS, and on every position of a row without one (OpenOCR)."""
    is_eos = pred == eos_id
    first = is_eos.float().argmax(dim=1, keepdim=True)  # (B, 1)
    pos = torch.arange(pred.shape[1], device=pred.device)
    return (pos > first) | ~is_eos.any(dim=1, keepdim=True)


def _predict(model_fn: Callable, x: torch.Tensor, mask_id: int, temperature: float) -> torch.Tensor:
    """Softmax [B, L, C] of the model's logits over its classes (float32)."""
    logits = model_fn(x)
    logits = logits.logits if hasattr(logits, "logits") else logits
    if mask_id < logits.shape[-1]:
        raise ValueError(f"mask_id {mask_id} must not be an output class (the model has {logits.shape[-1]})")
    return torch.softmax(logits.float() / temperature, dim=-1)


def _start(shape, mask_id: int, device) -> torch.Tensor:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (rows, length) with both >= 1, got {tuple(shape)}")
    return torch.full(tuple(shape), int(mask_id), dtype=torch.long, device=device)


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return steps


def mean_confidence(conf: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, L] the valid positions whose confidence is strictly above the mean confidence of the row's valid ones
    (OpenOCR ``forward_low_confidence_decoding``; a row with none valid commits nothing)."""
    mean = (conf * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
    return (conf > mean) & valid


def _commit_loop(model_fn, shape, mask_id, eos_id, steps, temperature, device, choose) -> Decoded:
    """The loop low_confidence, random and semi_autoregressive share: predict, record the masked positions'
    probabilities, commit ``choose(step, conf, valid)`` of the valid ones (masked and before the first EOS)."""
    x = _start(shape, mask_id, device)
    masked = torch.ones_like(x, dtype=torch.bool)
    out, stop_next, passes = None, False, 0
    for s in range(_check_steps(steps)):
        probs = _predict(model_fn, x, mask_id, temperature)  # (B, L, C)
        passes += 1
        out = probs.clone() if out is None else torch.where(masked[..., None], probs, out)
        conf, pred = probs.max(dim=-1)
        after = after_eos(pred, eos_id)
        valid = masked & ~after
        x = torch.where(choose(s, conf, valid), pred, x)
        masked = x == mask_id
        if stop_next:
            break
        stop_next = bool(((masked & ~after).sum(-1) <= 1).all())  # one more pass, then stop (the reference)
    return Decoded(out, passes)


@STR_DECODER.register("parallel", "one pass: every position predicted at once")
def parallel(model_fn, shape, *, mask_id, eos_id, steps=1, keys=None, temperature=1.0, device=None) -> Decoded:
    return Decoded(_predict(model_fn, _start(shape, mask_id, device), mask_id, temperature), 1)


@STR_DECODER.register("autoregressive", "left to right, one position per pass, until every row has an EOS")
def autoregressive(model_fn, shape, *, mask_id, eos_id, steps=1, keys=None, temperature=1.0, device=None):
    x = _start(shape, mask_id, device)
    out = None
    for i in range(x.shape[1]):
        probs = _predict(model_fn, x, mask_id, temperature)
        out = probs.clone() if out is None else torch.cat([out[:, :i], probs[:, i:]], dim=1)
        x[:, i] = probs[:, i].argmax(-1)
        if bool((x == eos_id).any(dim=1).all()):
            break
    return Decoded(out, i + 1)  # positions past every row's EOS keep the last pass's prediction


@STR_DECODER.register("low_confidence", "commit masked positions above the row's mean confidence per pass")
def low_confidence(model_fn, shape, *, mask_id, eos_id, steps, keys=None, temperature=1.0, device=None):
    def above_mean(s, conf, valid):
        return mean_confidence(conf, valid)

    return _commit_loop(model_fn, shape, mask_id, eos_id, steps, temperature, device, above_mean)


@STR_DECODER.register("random", "commit each valid masked position with probability 1/2 per pass (keyed)")
def random(model_fn, shape, *, mask_id, eos_id, steps, keys=None, temperature=1.0, device=None):
    if keys is None:
        raise ValueError("the random decoder needs keys [B] (masklab.corrupt.keyed)")
    keys = torch.as_tensor(keys).reshape(-1)
    if keys.numel() != shape[0]:
        raise ValueError(f"keys must hold one key per row: {shape[0]} rows, got {keys.numel()}")

    def coin(s, conf, valid):
        u = keyed.uniform(keyed.derive(keys, _RANDOM_SALT, s), valid.shape[1]).to(valid.device)  # (B, L)
        return (u > 0.5) & valid

    return _commit_loop(model_fn, shape, mask_id, eos_id, steps, temperature, device, coin)


def block_window(step: int, steps: int, length: int) -> slice:
    """The positions the semi-autoregressive decoder may commit at ``step`` (OpenOCR's schedule, blocks of
    length // steps): the first (step + 1) blocks for the first three steps, then a two-block window, and from
    step steps - 2 on everything from block step - 1."""
    size = length // steps
    if step <= 2:
        return slice(0, size * (step + 1)) if steps > 2 else slice(0, length)
    if step >= steps - 2:
        return slice(size * (step - 1), length)
    return slice(size * (step - 1), size * (step + 1))


@STR_DECODER.register("semi_autoregressive", "the mean-confidence rule inside a window that moves block by block")
def semi_autoregressive(model_fn, shape, *, mask_id, eos_id, steps, keys=None, temperature=1.0, device=None):
    def windowed(s, conf, valid):
        inside = torch.zeros_like(valid)
        inside[:, block_window(s, steps, valid.shape[1])] = True
        return mean_confidence(conf, valid & inside)

    return _commit_loop(model_fn, shape, mask_id, eos_id, steps, temperature, device, windowed)


@STR_DECODER.register("cloze", "a parallel pass, then each position re-predicted with only itself masked")
def cloze(model_fn, shape, *, mask_id, eos_id, steps=1, keys=None, temperature=1.0, device=None) -> Decoded:
    out = _predict(model_fn, _start(shape, mask_id, device), mask_id, temperature)
    x = out.argmax(-1)
    x[after_eos(x, eos_id)] = mask_id  # the reference keeps <mask> after the first EOS
    for i in range(x.shape[1]):
        x[:, i] = mask_id
        probs = _predict(model_fn, x, mask_id, temperature)
        out[:, i] = probs[:, i]
        x[:, i] = probs[:, i].argmax(-1)
        if bool((x[:, : i + 1] == eos_id).any(dim=1).all()):
            break
    return Decoded(out, i + 2)
