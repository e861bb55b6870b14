"""Approximate KV caches for semi-autoregressive decoding of a bidirectional masked-diffusion LM (Fast-dLLM, Wu et al.
2025, "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache and Parallel Decoding", Sec. 3.2
and Fig. 2; reference: NVlabs/Fast-dLLM ``llada/generate.py``, ``generate_with_prefix_cache`` and
``generate_with_dual_cache``).

The sequence is cut into blocks of ``block_length`` positions at fixed places (0 .. B-1, B .. 2B-1, ...) and the
blocks are decoded in order, each by any registered sampler run on that block alone (as :mod:`masklab.sample.block`).
A bidirectional model has no exact cache: every token attends to every other, so the keys and values of the prompt
change whenever a token of the block is revealed. Fast-dLLM reuses them anyway, on the observation that they change
little within a block:

- ``cache="none"`` (the anchor): every denoising step runs the whole sequence through the model.
- ``cache="prefix"``: the first step of a block runs the whole sequence and keeps, in every layer, the keys and values
  of the positions before the block; the later steps of the block run only the block and the suffix after it
  against them (the reference's ``past_key_values[...][:, :, :start]``).
- ``cache="dual"``: the first step keeps the keys and values of every position; the later steps run only the block,
  its fresh keys and values replacing the cached ones at the block's positions (the reference's ``replace_position``),
  so the block attends to the cached prefix and the cached suffix.

Both are refreshed at the start of every block. Only the logits of later steps depart from the uncached ones; with a
single layer both caches are exact (the keys and values of layer 0 depend only on the tokens, and the cached ones do
not change within a block), which tests/sample/test_approx_cache.py checks, and ``departure=[]`` records the exact
departure of every cached step (max |logit difference| and the KL divergence of the cached from the uncached
distribution, at the block's masked positions; it costs one uncached pass per step).

How the keys and values are had: transformers' ModernBERT cannot return them, so :class:`BertLayers` runs the layers of
a ``ModernBertForMaskedLM`` itself (embeddings, per layer the pre-norm, fused QKV projection, rotary embedding, SDPA,
output projection and GLU MLP, then the final norm and the MLM head), keeping each layer's rotated keys and values;
its uncached pass equals the model's own forward within 1e-5 (tested). Models with sliding-window layers are refused
(masklab's ModernBERT recipes make every layer global). ``cache="none"`` takes any model (an HF masked LM or any
callable ids -> logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.objectives.base import logits_of
from masklab.sample.generate import Generation, as_model_fn, checked, row_keys

__all__ = ["CACHES", "BertLayers", "cached_generate"]

CACHES = ("none", "prefix", "dual")


class BertLayers:
    """The layers of a ``ModernBertForMaskedLM`` run one by one, so each layer's keys and values can be kept and
    reused. ``forward(ids, pos, real, past)`` -> (logits [r, n, V], per-layer (K, V) [r, H, n, D] of ``ids``)."""

    def __init__(self, model):
        body = getattr(model, "model", None)
        if type(model).__name__ != "ModernBertForMaskedLM" or body is None:
            raise ValueError(
                f"cache: the approximate caches run ModernBERT's layers one by one; {type(model).__name__} is not a "
                "ModernBertForMaskedLM (use cache='none')"
            )
        kinds = set(getattr(model.config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            raise ValueError(f"cache: the model has {sorted(kinds)} layers; the caches need every layer global")
        self.model, self.body = model, body
        self.heads = model.config.num_attention_heads
        self.head_dim = model.config.hidden_size // self.heads

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, pos: torch.Tensor, real: torch.Tensor, past=None):
        """Logits of ``ids`` [r, n] at positions ``pos`` [r, n], and each layer's (K, V) of these tokens.

        ``real`` [r, T] marks the keys that may be attended to (not padding), in key order: the past keys before
        ``ids``' own when ``past`` is a list of (K_before, K_after, V_before, V_after) per layer, whose keys are
        ``K_before ++ own ++ K_after``."""
        from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

        r, n = ids.shape
        h = self.body.embeddings(input_ids=ids)  # (r, n, D)
        cos, sin = self.body.rotary_emb(h, pos, "full_attention")  # (r, n, head_dim) each
        mask = real[:, None, None, :]  # (r, 1, 1, T): who may be seen
        kept = []
        for i, layer in enumerate(self.body.layers):
            qkv = layer.attn.Wqkv(layer.attn_norm(h)).view(r, n, 3, self.heads, self.head_dim)
            q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # (r, H, n, hd) each
            q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
            kept.append((k, v))
            if past is not None:
                kb, ka, vb, va = past[i]
                k, v = torch.cat([kb, k, ka], 2), torch.cat([vb, v, va], 2)  # (r, H, T, hd)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5)
            h = h + layer.attn.Wo(out.transpose(1, 2).reshape(r, n, -1))
            h = h + layer.mlp(layer.mlp_norm(h))
        logits = self.model.decoder(self.model.head(self.body.final_norm(h)))  # (r, n, V)
        return logits, kept


class _Window:
    """The model on block [lo, hi) of some rows, given the rest of their sequence ``ids`` [r, L]: a callable
    xb [r, n] -> logits [r, n, V] for a sampler, keeping the keys and values that ``cache`` says between calls.
    ``every_row``: the Decoder sends every row (they are tied to the cache's rows)."""

    every_row = True

    def __init__(self, model, layers: BertLayers | None, ids, lo, hi, *, cache, mask_id, pad_id, departure):
        self.model, self.layers, self.ids, self.lo, self.hi = model, layers, ids.clone(), lo, hi
        self.cache, self.mask_id, self.pad_id, self.departure = cache, mask_id, pad_id, departure
        self.real = ids != pad_id if pad_id is not None else torch.ones_like(ids, dtype=torch.bool)  # (r, L)
        self.kv = None  # per layer (K, V) [r, H, L, hd] of the whole sequence, from the block's first step

    def _full(self, ids):
        """Logits [r, L, V] of the whole sequence, uncached (the model's own forward)."""
        return as_model_fn(self.model, self.pad_id)(ids) if hasattr(self.model, "config") else self.model(ids)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lo, self.hi
        self.ids[:, lo:hi] = xb
        if self.cache == "none":
            return logits_of(self._full(self.ids))[:, lo:hi]
        r, L = self.ids.shape
        pos = torch.arange(L, device=xb.device)[None].expand(r, -1)
        if self.kv is None:  # the block's first step: the whole sequence, and every layer's keys and values kept
            logits, self.kv = self.layers.forward(self.ids, pos, self.real)
            return logits[:, lo:hi]
        if self.cache == "prefix":  # block and suffix against the prefix's cached keys and values
            past = [(k[:, :, :lo], k[:, :, :0], v[:, :, :lo], v[:, :, :0]) for k, v in self.kv]
            logits = self.layers.forward(self.ids[:, lo:], pos[:, lo:], self.real, past)[0][:, : hi - lo]
        else:  # dual: the block against the cached prefix and suffix
            past = [(k[:, :, :lo], k[:, :, hi:], v[:, :, :lo], v[:, :, hi:]) for k, v in self.kv]
            logits = self.layers.forward(xb, pos[:, lo:hi], self.real, past)[0]
        if self.departure is not None:
            self._record(logits, xb)
        return logits

    def _record(self, cached: torch.Tensor, xb: torch.Tensor) -> None:
        """(max |logit difference|, mean KL(uncached || cached) in nats) at the block's masked positions."""
        exact = logits_of(self._full(self.ids))[:, self.lo : self.hi].float()
        where = xb == self.mask_id
        if not bool(where.any()):
            return
        p, q = exact[where].log_softmax(-1), cached.float()[where].log_softmax(-1)  # (N, V) each
        kl = (p.exp() * (p - q)).sum(-1).mean()
        self.departure.append((float((exact[where] - cached.float()[where]).abs().max()), float(kl)))


def _check(cache: str, block_length, options: dict) -> None:
    if cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {cache!r}")
    if isinstance(block_length, bool) or not isinstance(block_length, int) or block_length < 1:
        raise ValueError(f"block_length must be a positive int, got {block_length!r}")
    if options.get("cfg_scale"):
        raise ValueError("cfg_scale: classifier-free guidance is not supported with the approximate caches")
    if "block_length" in options:
        raise ValueError("block_length is the block of the cache here; pass it once")


def cached_generate(
    model, input_ids: torch.Tensor, *, mask_id, block_length: int = 32, cache: str = "dual",
    sampler: str = "confidence", steps=None, temperature: float = 1.0, seed=None, top_k=None, top_p=None,
    return_order: bool = False, departure: list | None = None, **options,
):  # fmt: skip
    """Fill every ``mask_id`` of ``input_ids`` [B, L] (or [L]) block by block, with the approximate ``cache``
    (``none``, ``prefix`` or ``dual``; see the module docstring).

    ``steps`` (an int or one per row) counts per block (default: one per masked token of the block). ``options``:
    ``pad_id``, ``eos_id``, ``fill_id`` and the sampler's own options, as in :func:`masklab.sample.generate`.
    ``departure``: a list that receives (max |logit difference|, KL) of every cached step against the uncached pass.
    Returns the ids, or a :class:`~masklab.sample.generate.Generation` when ``return_order`` is set."""
    _check(cache, block_length, options)
    run, x, steps_t = checked(input_ids, mask_id=mask_id, sampler=sampler, steps=steps, temperature=temperature,
                              options=options)  # fmt: skip
    layers = BertLayers(model) if cache != "none" else None
    pad_id, eos_id = options.get("pad_id"), options.get("eos_id")
    fill_id = options.get("fill_id") if options.get("fill_id") is not None else eos_id
    keys = row_keys(seed, x.shape[0], x.device)
    x, generated = x.clone(), x == mask_id
    order = torch.where(generated, 0, -1)  # (B, L) step of each reveal, counted over the row's blocks
    offset = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # steps of each row's finished blocks
    stats = {"nfe": 0, "row_nfe": torch.zeros(x.shape[0], dtype=torch.long, device=x.device)}
    for k, lo in enumerate(range(0, x.shape[1], block_length)):
        hi = min(lo + block_length, x.shape[1])
        rows = (x[:, lo:hi] == mask_id).any(1).nonzero(as_tuple=True)[0]  # rows with a mask in this block
        if not len(rows):
            continue
        window = _Window(model, layers, x[rows], lo, hi, cache=cache, mask_id=mask_id, pad_id=pad_id,
                         departure=departure)  # fmt: skip
        part, sub = x[rows, lo:hi], {}
        sub_order = torch.where(part == mask_id, 0, -1)
        x[rows, lo:hi] = run(
            window, part, mask_id=mask_id, keys=keyed.derive(keys[rows], k), order=sub_order, stats=sub,
            steps=(part == mask_id).sum(1) if steps is None else steps_t[rows], temperature=temperature, top_k=top_k,
            top_p=top_p, **options,
        )  # fmt: skip
        order[rows, lo:hi] = torch.where(sub_order >= 0, sub_order + offset[rows, None], -1)
        offset[rows] += sub_order.max(1).values + 1
        stats["nfe"] += sub["nfe"]
        stats["row_nfe"][rows] += sub["row_nfe"]
        if eos_id is not None:  # a row stops at its first generated EOS, in whichever block it fell
            eos = ((x == eos_id) & generated).long()
            cut = ((eos.cumsum(1) - eos) > 0) & generated & (x != fill_id)
            order = torch.where(cut & (x == mask_id), offset[:, None], order)
            x = x.masked_fill(cut, fill_id)
    out, order = (x[0], order[0]) if input_ids.dim() == 1 else (x, order)
    return Generation(out, order, int(offset.max()), stats["nfe"], stats) if return_order else out
