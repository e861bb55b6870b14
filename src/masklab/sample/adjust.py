"""ADJUST sampling (Bansal & Sanghavi 2025, "Enabling Approximate Joint Sampling in Diffusion LMs", arXiv 2509.22738):
k tokens per full forward of a frozen masked-diffusion model, each conditioned on the ones revealed before it.

At each step the frozen model runs once on x; the row's k tokens are then revealed one at a time, the first from
the model's own p(x_i | x), each later one from the head's q(x_i | h(x), S), S the tokens revealed since the
forward (:class:`masklab.objectives.adjust.AdjustHead`): k - 1 head passes, no further full forward. Which
position comes next (``remasking``, the ``confidence`` sampler's scores):

- ``low_confidence`` (and the other confidence scores): every masked position of the block draws a token from
  the current distribution (the model's, then the head's after each reveal) and the one whose drawn token is the
  most probable is revealed: the paper's top-confidence unmasking, re-ranked after each head pass since the
  head's conditionals change the scores;
- ``random``: a uniformly random order (keyed), the order in which one token per forward is the model's joint.

The default is the order the head was trained in (its recipe's ``remasking``). By construction:

- k = 1 is exact one-token-per-forward decoding, the same ids for the same keys as ``confidence`` with the same
  ``remasking`` and one token per step;
- an untrained head (its output layer is zero) gives marginal parallel decoding, the same ids as ``confidence``
  with the same ``remasking`` and ``steps = ceil(n / k)`` (the redraws of a step reuse the step's keyed uniforms,
  so an unchanged distribution gives unchanged tokens and scores);
- a head trained by :class:`~masklab.objectives.adjust.AdjustObjective` approximates the exact joint in between.

``stats["nfe"]`` counts full forwards, ``stats["head_passes"]`` the head's. A head records the fingerprint of the
model it was trained on; sampling with another model is a ValueError naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from masklab.objectives.adjust import AdjustHead, base_call, fingerprint
from masklab.sample.generate import DECODER_OPTIONS, Generation, checked, row_keys
from masklab.sample.samplers._decode import Decoder, check_logits, split_evenly
from masklab.sample.samplers.confidence import REMASKING, scores

__all__ = ["Head", "load_head", "adjust_generate"]


@dataclass
class Head:
    """A trained ADJUST head and the base model it belongs to: ``base_fingerprint`` (:func:`fingerprint` of its
    weights) and ``base`` (the name it was trained from, for messages)."""

    module: AdjustHead
    base_fingerprint: str
    base: str = "?"
    k: int = 0  # the tokens per full forward it was trained for (informational)
    remasking: str = "random"  # the reveal order it was trained in: adjust_generate's default

    def check_base(self, model) -> None:
        got = fingerprint(model)
        if got != self.base_fingerprint:
            raise ValueError(
                f"the ADJUST head was trained on base {self.base} (fingerprint {self.base_fingerprint}), but the model "
                f"given has fingerprint {got}: train a head for this model (masklab train --recipe adjust base=...)"
            )


def load_head(path) -> Head:
    """The :class:`Head` of an ``adjust`` run (run folder or its ``model/``), verified against its manifest."""
    from safetensors.torch import load_file

    from masklab.train import checkpoint

    loaded = checkpoint.load(path, model=False)
    if loaded.manifest is None:  # a plain Hugging Face folder: no manifest, so no record of a base
        raise ValueError(f"{path} is not an ADJUST head (a Hugging Face folder, no masklab.json): no base_fingerprint")
    info, recipe = loaded.manifest.get("info", {}), loaded.manifest.get("recipe", {})
    if "base_fingerprint" not in info:
        raise ValueError(f"{path} is not an ADJUST head (its recipe is {recipe.get('name')!r}): no base_fingerprint")
    module = AdjustHead(info["in_dim"], info["vocab"], info["max_len"], recipe["dim"], recipe["heads"], recipe["ff"])
    module.load_state_dict(load_file(Path(loaded.folder) / "model.safetensors"))
    # a head saved before the order was a recipe field was trained in a uniformly random order
    order = recipe.get("remasking", "random")
    return Head(module.eval(), info["base_fingerprint"], info.get("base", "?"), int(recipe["k"]), order)


def adjust_generate(
    model,
    input_ids: torch.Tensor,
    *,
    head: Head,
    k: int,
    mask_id: int | None,
    temperature: float = 1.0,
    seed=None,
    top_k: int | None = None,
    top_p: float | None = None,
    return_order: bool = False,
    remasking: str | None = None,
    **options,
):
    """Fill every ``mask_id`` of ``input_ids`` [B, L] (or [L]) with ADJUST, ``k`` tokens per full forward of
    ``model`` (a Hugging Face masked LM or a callable ids -> logits, the one ``head`` was trained on).

    ``remasking``: the reveal order (module docstring), by default the one the head was trained in. ``seed``
    and the shared decoding options (``block_length``, ``eos_id``, ``fill_id``, ``pad_id``) are those of
    :func:`masklab.sample.generate`; ``cfg_scale`` is refused (the head is trained on the conditional pass only).
    Returns the ids, or a :class:`Generation` whose ``nfe`` counts full forwards and whose ``stats`` hold
    ``head_passes``."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k (tokens per full forward) must be a positive integer, got {k!r}")
    if options.get("cfg_scale", 0.0):
        raise ValueError("cfg_scale: ADJUST's head is trained on the conditional pass only; leave cfg_scale at 0")
    if not isinstance(head, Head):
        raise TypeError(f"head must be a masklab.sample.adjust.Head (load_head(path)), got {type(head).__name__}")
    remasking = head.remasking if remasking is None else remasking
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    unknown = sorted(set(options) - DECODER_OPTIONS)
    if unknown:
        raise ValueError(f"adjust_generate does not take option {unknown[0]!r}; it takes {sorted(DECODER_OPTIONS)}")
    head.check_base(model)
    # the checks every generation call makes (mask id, a non-empty batch holding a mask, temperature)
    _, x, _ = checked(input_ids, mask_id=mask_id, sampler="confidence", steps=None, temperature=temperature,
                      options=options)  # fmt: skip
    order = torch.where(x == mask_id, 0, -1).to(torch.long)
    stats: dict = {"head_passes": 0}
    out = adjust(base_call(model, options.get("pad_id")), head.module, x, mask_id=mask_id, k=k,
                 keys=row_keys(seed, x.shape[0], x.device), temperature=temperature, top_k=top_k, top_p=top_p,
                 order=order, stats=stats, remasking=remasking, **options)  # fmt: skip
    if input_ids.dim() == 1:
        out, order = out[0], order[0]
    if not return_order:
        return out
    return Generation(out, order, int(stats.get("row_nfe", torch.zeros(1)).max()), stats["nfe"], stats)


class _Recorded:
    """The ids -> logits callable the :class:`Decoder` calls, keeping the features of its last call."""

    every_row = False

    def __init__(self, call):
        self.call, self.features = call, None

    def __call__(self, x):
        logits, self.features = self.call(x)
        return logits


def adjust(call, head: AdjustHead, x, *, mask_id, k: int, keys, stats=None, order=None, remasking="random",
           **options):  # fmt: skip
    """The decoding loop: ``call(x) -> (logits, features)`` (:func:`masklab.objectives.adjust.base_call`), ``head``
    the module, ``x`` [B, L], per-row ``keys`` [B], ``remasking`` the reveal order; ``options`` as
    :class:`Decoder`'s. Each block of a row takes ceil(masked / k) full forwards, its masked count spread evenly
    over them (so never more than k per forward)."""
    rec = _Recorded(call)
    n = (x == mask_id).sum(1)
    d = Decoder(rec, x, mask_id=mask_id, steps=n, keys=keys, order=order, stats=stats, **options)
    size = torch.stack([(d.block_of == b).sum(1) for b in range(d.n_blocks)], 1)  # (B, n_blocks) masks per block
    d.block_steps = torch.div(size + k - 1, k, rounding_mode="floor")  # ceil(size / k) full forwards per block
    pad = x == options["pad_id"] if options.get("pad_id") is not None else None
    for _, active, n_steps in d.blocks():
        counts = split_evenly(active.sum(1), n_steps, int(n_steps.max()))  # (B, steps of this block), each <= k
        for s in range(counts.shape[1]):
            active = d.active()
            if not active.any():
                break
            _step(d, rec, head, active, counts[:, s], s, pad, remasking)
    return d.x


def _step(d: Decoder, rec: _Recorded, head: AdjustHead, active, count, s: int, pad, remasking: str) -> None:
    """One full forward, then ``count`` [B] tokens per row: the first from the model, the rest from the head, each
    at the position that ranks first by ``remasking`` under the distribution it is drawn from."""
    B, L = d.x.shape
    alive = (d.x == d.mask_id).any(1)  # the rows the Decoder sends to the model
    base_logits = d.logits()  # (B, L, V)
    feats = rec.features
    if not bool(alive.all()):
        full = feats.new_zeros((B,) + tuple(feats.shape[1:]))
        full[alive] = feats
        feats = full
    V = base_logits.shape[-1]
    start = d.x.clone()
    for i in range(int(count.max())):
        left = active & (d.x == d.mask_id) & (i < count)[:, None]  # (B, L) the candidates of this reveal
        if not left.any():
            continue
        if i == 0:
            logits = base_logits
        else:
            new = torch.where(d.x != start, d.x, V)  # tokens revealed since the forward (EOS fills too)
            with torch.no_grad():
                delta = head.correction(feats, new, pad)  # (B, L, V): one head pass
            d.stats["head_passes"] = d.stats.get("head_passes", 0) + 1
            check_logits(delta, d.calls - 1, where=left)  # base_logits were checked by the Decoder
            logits = base_logits.float() + delta  # the mask token stays at -inf
        rows, cols = left.nonzero(as_tuple=True)
        # every candidate draws from the current distribution with the step's keyed uniforms, as confidence does
        tok = d.draw(logits[rows, cols], rows, cols, s)  # (N,)
        if remasking == "random":  # a uniformly random order: the step's keyed scores, as confidence's "random"
            conf = d.uniforms(s, 1, torch.float32)[rows, cols]
        else:
            conf = scores(remasking, logits[rows, cols], tok, d.options)
        score = torch.full((B, L), float("-inf"), dtype=torch.float64, device=d.x.device)
        score[rows, cols] = conf.double()
        first = score.argmax(dim=1, keepdim=True)  # (B, 1) the top-ranked candidate (the first of ties, as stable sort)
        pick = torch.zeros_like(left).scatter_(1, first, True) & left  # (B, L): at most one per row
        d.commit(rows, cols, tok, s, where=pick)
