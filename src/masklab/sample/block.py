"""Block diffusion decoding (BD3-LM, Arriola et al. 2025, Alg. 2 and Sec. 3.1; reference: kuleshov-group/bd3lms
``diffusion.py`` ``_semi_ar_sampler``): the positions of every row are cut into blocks of ``block_length`` at fixed
places (0 .. B-1, B .. 2B-1, ...), and the blocks are decoded one after the other, each by any registered sampler
run on that block alone, given the final blocks before it. A model trained by :class:`masklab.objectives.bd3.BD3` is
block-causal, so a final block never changes again, nor do its keys and values: with ``cache=True`` they are kept
(:class:`masklab.sample.cache.KVCache`) and each denoising step runs only the block's tokens; without, each step runs
the whole prefix again under the block-causal mask (the reference the cache is tested against).

Batches: all rows go through block k together; a row takes part in a block only if the block holds one of its masks,
and rows with no mask left (their EOS generated, or simply done) leave the batch and the cache. Each row draws from
``derive(key_r, k)`` in block k, so its output depends only on its prompt, its seed and its logits: the same alone and
in a batch of prompts of other lengths (tests/sample/test_block.py). ``eos_id`` stops a row at its first generated
EOS, whichever block it is in: the generated positions after it become ``fill_id`` (default ``eos_id``).

``steps`` counts per block (default: one per masked token of the block). The model is an HF model (given the 4D
block-causal mask and position ids) or any callable ids -> logits, which is then given the prefix up to the block
(the exact HMM denoiser, for tests). Rows must be whole blocks: :func:`pad_to_blocks` right-pads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from masklab.attention import block_causal, to_dense
from masklab.corrupt import keyed
from masklab.objectives.base import logits_of
from masklab.objectives.bd3 import BLOCK_KEY
from masklab.sample.cache import KVCache, check_cache
from masklab.sample.generate import Generation, as_model_fn, checked, row_keys

__all__ = ["block_generate", "pad_to_blocks", "block_length_of", "load_block_lm", "saved_block_length"]


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def block_length_of(model) -> int | None:
    """The block size a block-diffusion model was trained with (its config's ``masklab_block_size``), or None."""
    return getattr(getattr(model, "config", None), BLOCK_KEY, None)


def pad_to_blocks(x: torch.Tensor, block_length: int, pad_id: int) -> torch.Tensor:
    """``x`` [B, L] right-padded with ``pad_id`` to whole blocks of ``block_length``."""
    _positive(block_length, "block_length")
    extra = -x.shape[-1] % block_length
    return torch.nn.functional.pad(x, (0, extra), value=pad_id) if extra else x


class _Block:
    """The model on block [lo, hi) of ``rows``, given their final prefix: a callable ids [r, n] -> logits [r, n, V]
    for a sampler. ``every_row``: the Decoder sends every row (the rows are tied to the cache's rows)."""

    every_row = True

    def __init__(self, model, prefix: torch.Tensor, kv: KVCache | None, cache_rows, block: int, pad_id):
        self.model, self.prefix, self.kv, self.cache_rows, self.block, self.pad_id = (
            model, prefix, kv, cache_rows, block, pad_id,
        )  # fmt: skip

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        if self.kv is not None:
            return self.kv.logits(xb, self.cache_rows)  # (r, n, V) against the committed keys and values
        ids = torch.cat([self.prefix, xb], 1)  # (r, hi): the final blocks, then this one
        lo, hi = self.prefix.shape[1], ids.shape[1]
        if not hasattr(self.model, "config"):
            return as_model_fn(self.model)(ids)[:, lo:hi]
        mask = to_dense(block_causal(self.block), hi, hi, device=ids.device)  # (1, 1, hi, hi)
        if self.pad_id is not None:
            mask = mask & (ids != self.pad_id)[:, None, None, :]
        pos = torch.arange(hi, device=ids.device)[None].expand(ids.shape[0], -1)
        with torch.no_grad():
            return logits_of(self.model(input_ids=ids, attention_mask=mask, position_ids=pos))[:, lo:hi]


def _check_fit(model, L: int, block: int) -> None:
    if L % block:
        raise ValueError(
            f"block_length={block} does not fit the sequence: its {L} positions are not whole blocks; "
            "right-pad the rows (pad_to_blocks)"
        )
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and L > limit:
        raise ValueError(f"the sequence of {L} positions (whole blocks of {block}) exceeds the model's {limit}")


class _Decoding:
    """The state of one :func:`block_generate` call: ids [B, L], reveal order, each row's steps so far, statistics,
    and ``work``, the rows with masks left, in the order of the cache's rows."""

    def __init__(self, x: torch.Tensor, mask_id: int, keys: torch.Tensor):
        B = x.shape[0]
        self.x, self.mask_id, self.keys, self.generated = x.clone(), mask_id, keys, x == mask_id
        self.order = torch.where(self.generated, 0, -1)  # (B, L) step of each reveal, counted over the row's blocks
        self.offset = torch.zeros(B, dtype=torch.long, device=x.device)  # steps of each row's finished blocks
        self.stats = {"nfe": 0, "row_nfe": torch.zeros(B, dtype=torch.long, device=x.device), "commits": 0}
        self.work = self.generated.any(1).nonzero(as_tuple=True)[0]

    def block(self, k: int, lo: int, hi: int, run, make_fn, steps, **kw) -> None:
        """Decode block k = [lo, hi) of the working rows that have a mask there with the sampler ``run``, given
        ``make_fn(prefix, cache_rows)``, the model on that block given the rows' final blocks ``prefix``;
        ``steps``: [B] per row, or None (one per mask)."""
        live = (self.x[self.work, lo:hi] == self.mask_id).any(1)  # (len(work),)
        if not live.any():
            return
        rows = self.work[live]
        cache_rows = None if bool(live.all()) else live.nonzero(as_tuple=True)[0]  # None: every cached row, no copy
        part = self.x[rows, lo:hi]
        sub_order, sub = torch.where(part == self.mask_id, 0, -1), {}
        self.x[rows, lo:hi] = run(
            make_fn(self.x[rows, :lo], cache_rows), part, mask_id=self.mask_id, keys=keyed.derive(self.keys[rows], k),
            steps=(part == self.mask_id).sum(1) if steps is None else steps[rows], order=sub_order, stats=sub, **kw,
        )  # fmt: skip
        self.order[rows, lo:hi] = torch.where(sub_order >= 0, sub_order + self.offset[rows, None], -1)
        self.offset[rows] += sub_order.max(1).values + 1
        self.stats["nfe"] += sub["nfe"]
        self.stats["row_nfe"][rows] += sub["row_nfe"]

    def stop_at_eos(self, eos_id: int, fill_id: int) -> None:
        """Generated positions after a row's first generated EOS, in whichever block it fell, become ``fill_id``."""
        eos = ((self.x == eos_id) & self.generated).long()
        cut = ((eos.cumsum(1) - eos) > 0) & self.generated & (self.x != fill_id)
        self.order = torch.where(cut & (self.x == self.mask_id), self.offset[:, None], self.order)
        self.x = self.x.masked_fill(cut, fill_id)

    def retire(self, hi: int) -> torch.Tensor:
        """Drop the rows with no mask at or after ``hi``; returns the kept ones' indices into the old ``work``."""
        left = (self.x[self.work, hi:] == self.mask_id).any(1)
        self.work = self.work[left]
        return left.nonzero(as_tuple=True)[0]


def _block_size(model, x: torch.Tensor, block_length: int | None, cache: bool) -> int:
    """The block size to decode ``x`` [B, L] with, once the cache and the block fit the model and the rows."""
    if cache:
        check_cache(model)  # a model that cannot return keys and values
    block = block_length if block_length is not None else block_length_of(model)
    if block is None:
        raise ValueError("block_length: the model does not say its block size; pass block_length")
    _positive(block, "block_length")
    _check_fit(model, x.shape[1], block)
    return block


def block_generate(
    model, input_ids: torch.Tensor, *, mask_id, block_length: int | None = None, cache: bool = False,
    sampler: str = "confidence", steps=None, temperature: float = 1.0, seed=None, top_k=None, top_p=None,
    return_order: bool = False, **options,
):  # fmt: skip
    """Fill every ``mask_id`` of ``input_ids`` [B, L] (or [L]) block by block (see the module docstring).

    ``block_length`` defaults to the model's own; ``cache`` keeps the keys and values of final blocks (a model that
    cannot return them is a ValueError). ``steps`` (an int or one per row) counts per block. ``options``: ``pad_id``,
    ``eos_id``, ``fill_id`` and the sampler's own options, as in :func:`masklab.sample.generate`. Returns the ids,
    or a :class:`~masklab.sample.generate.Generation` when ``return_order`` is set."""
    if options.get("cfg_scale"):
        raise ValueError("cfg_scale: classifier-free guidance is not supported in block decoding")
    run, x, steps_t = checked(input_ids, mask_id=mask_id, sampler=sampler, steps=steps, temperature=temperature,
                              options=options)  # fmt: skip
    block, pad_id, eos_id = _block_size(model, x, block_length, cache), options.get("pad_id"), options.get("eos_id")
    fill_id = options.get("fill_id") if options.get("fill_id") is not None else eos_id
    kv = KVCache(model, block, pad_id) if cache else None
    d = _Decoding(x, mask_id, row_keys(seed, x.shape[0], x.device))

    def make_fn(prefix, cache_rows):  # the model on the next block of some rows, given their final blocks
        return _Block(model, prefix, kv, cache_rows, block, pad_id)

    for k in range(x.shape[1] // block):
        lo, hi = k * block, (k + 1) * block
        d.block(k, lo, hi, run, make_fn, None if steps is None else steps_t, temperature=temperature, top_k=top_k,
                top_p=top_p, **options)  # fmt: skip
        if eos_id is not None:
            d.stop_at_eos(eos_id, fill_id)
        kept = d.retire(hi)
        if not len(d.work):
            break
        if kv is not None:
            kv.keep(kept)
            kv.commit(d.x[d.work, lo:hi])  # the final block's keys and values, once
            d.stats["commits"] += 1
    out, order = (d.x[0], d.order[0]) if input_ids.dim() == 1 else (d.x, d.order)
    return Generation(out, order, int(d.offset.max()), d.stats["nfe"], d.stats) if return_order else out


def saved_block_length(path) -> int | None:
    """The block size recorded in the config of the model folder (or run folder) ``path``; None if it has none or
    is not a local folder."""
    import json

    from masklab.train import checkpoint

    p = Path(path)
    if not p.is_dir():
        return None
    folder = checkpoint.resolve(p) if checkpoint.is_checkpoint(p) else p
    config = folder / "config.json"
    return json.loads(config.read_text()).get(BLOCK_KEY) if config.is_file() else None


def load_block_lm(path):
    """(model in eval mode, tokenizer) of a run, checkpoint or Hugging Face folder, through the one loader
    (:func:`masklab.train.checkpoint.load`); a folder without a tokenizer or a mask token is one ValueError."""
    from masklab.train import checkpoint

    loaded = checkpoint.load(path)
    if loaded.tokenizer is None or loaded.tokenizer.mask_token_id is None:
        raise ValueError(f"{path} has no tokenizer with a mask token; block decoding needs one")
    return loaded.model.eval(), loaded.tokenizer
