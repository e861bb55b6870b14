"""Block diffusion (BD3-LM; Arriola et al. 2025, "Block Diffusion: Interpolating Between Autoregressive and Diffusion
Language Models", Sec. 3; reference: kuleshov-group/bd3lms ``diffusion.py`` ``_forward_pass_diffusion`` and
``models/dit.py`` ``block_diff_mask``).

A sequence of L tokens is cut into L / B blocks of B tokens. The model is autoregressive over blocks and a masked
diffusion inside each, and its NELBO is the sum over blocks of MDLM's bound on block b given the clean blocks before
it (Eq. 3-4; linear schedule alpha_t = 1 - t, so the weight alpha'_t / (1 - alpha_t) is -1 / t):

    L_BD(x) = sum_b E_{t_b ~ U[eps, 1)} [ (1 / t_b) sum_{i in b, masked} -log p_theta(x_i | x_t^b, x^{<b}) ]

Vectorized training (Sec. 3.2): one forward pass over x_t (+) x_0, of length 2L, with position ids 0 .. L-1 for both
halves and the mask M_full = [[M_BD, M_OBC], [0, M_BC]] (:func:`training_mask`):

- M_BD, block-diagonal: a noised block sees itself;
- M_OBC, offset block-causal: a noised block sees the clean blocks before it;
- M_BC, block-causal: a clean block sees itself and the clean blocks before it.

The first L logits are then p_theta(x^b | x_t^b, x^{<b}) for every block b in one pass: the numbers of L / B separate
passes over (clean blocks < b, noised block b) under the block-causal mask (tests/objectives/test_bd3.py checks this),
which is what block-by-block sampling computes with a KV cache of the clean blocks (:mod:`masklab.sample.block`).

Each (row, block) draws its own t from its own key (the reference's ``_sample_t``; ``stratified`` spreads them over
the rows x blocks of the global batch, the reference's antithetic option). The reference's clipped schedules
t ~ U[beta, omega] are not used: t ~ U[eps, 1) gives the NELBO itself. The loss is the bound in nats per token, as
:class:`masklab.objectives.mdm.MDM`; :meth:`BD3.evaluate` adds it in bits. The model's config records the block size
(``masklab_block_size``), so a saved checkpoint says it is block-causal and how.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.attention import or_masks, to_dense
from masklab.corrupt import keyed, sample_t
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, Corruption
from masklab.corrupt.tokens import eligible
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["BD3", "BLOCK_KEY", "training_mask", "block_noise", "block_t"]

BLOCK_KEY = "masklab_block_size"  # config.json field: the block size a block-diffusion model was trained with


def _named(fn, name: str, seq_len: int):
    """``fn`` as a masklab mask function (:mod:`masklab.attention.mods`): named, defined for ``seq_len`` only."""
    fn.__name__ = fn.__qualname__ = name
    fn.square, fn.seq_len, fn.batch = True, seq_len, None
    return fn


def training_mask(n: int, block: int):
    """M_full for ``x_t (+) x_0`` of ``2 n`` positions (index >= n: the clean copy): the union of the block-diagonal,
    offset block-causal and block-causal masks of the paper's Sec. 3.2, as one masklab mask function."""

    def parts(q, kv):  # (stream, block) of each index: stream 1 is the clean copy x_0
        return q >= n, kv >= n, torch.where(q >= n, q - n, q) // block, torch.where(kv >= n, kv - n, kv) // block

    def block_diagonal(b, h, q, kv):
        q0, kv0, bq, bkv = parts(q, kv)
        return (bq == bkv) & (q0 == kv0)

    def offset_block_causal(b, h, q, kv):
        q0, kv0, bq, bkv = parts(q, kv)
        return (bq > bkv) & kv0 & ~q0

    def block_causal(b, h, q, kv):
        q0, kv0, bq, bkv = parts(q, kv)
        return (bq >= bkv) & kv0 & q0

    parts3 = (block_diagonal, offset_block_causal, block_causal)
    return or_masks(*[_named(f, f"{f.__name__}_{block}_of_{n}", 2 * n) for f in parts3])


def block_t(keys, n_blocks: int, eps: float, mode: str, position=None, batch_size=None, batch_key=None):
    """[B, n_blocks] times, one per (row, block), each from the row's key and the block index."""
    B = keys.shape[0]
    blocks = torch.arange(n_blocks, device=keys.device)
    block_keys = keyed.derive(keys[:, None], blocks[None]).flatten()  # (B * n_blocks,)
    if position is not None:  # place (row, block) in the global batch of rows x blocks (stratified t)
        position = (position[:, None] * n_blocks + blocks.to(position.device)).flatten()
    size = batch_size * n_blocks if batch_size is not None else None
    t = sample_t(block_keys, eps=eps, mode=mode, position=position, batch_size=size, batch_key=batch_key)
    return t.view(B, n_blocks)


def block_noise(ids: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, info: TokenInfo, block: int) -> Corruption:
    """Each eligible token of ``ids`` [B, L] masked with its block's time ``t`` [B, L / block]; weight 1 / t."""
    t_tok = t.repeat_interleave(block, dim=1)  # (B, L)
    u = keyed.uniform(keys, ids.shape[1], stream=Stream.DIFFUSION_MASK)  # (B, L)
    masked = (u < t_tok) & eligible(ids, info.never_mask)
    inputs = torch.where(masked, torch.full_like(ids, info.mask_id), ids)
    targets = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    return Corruption(inputs, targets, masked, masked.float() / t_tok, (masked * MASKED).to(torch.int8))


class BD3(Objective):
    name = "bd3"

    def __init__(self, model, info: TokenInfo, block_size: int = 16, eps: float = 1e-3, t_sampling: str = "iid"):
        super().__init__(model)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        self.info, self.block, self.eps, self.t_sampling = info, block_size, eps, t_sampling
        setattr(model.config, BLOCK_KEY, block_size)  # saved in config.json: the checkpoint is block-causal
        self._masks: dict = {}  # (L, device) -> (1, 1, 2L, 2L) bool M_full

    def _mask(self, n: int, device) -> torch.Tensor:
        key = (n, str(device))
        if key not in self._masks:
            self._masks[key] = to_dense(training_mask(n, self.block), 2 * n, 2 * n, device=device)
        return self._masks[key]

    def vectorized_logits(self, x_t: torch.Tensor, x_0: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] of p_theta(x^b | x_t^b, x^{<b}) for every block b, in one pass over x_t (+) x_0."""
        B, n = x_0.shape
        pos = torch.arange(n, device=x_0.device).repeat(2)[None].expand(B, -1)  # (B, 2L): both halves at 0..L-1
        out = self.model(input_ids=torch.cat([x_t, x_0], 1), attention_mask=self._mask(n, x_0.device), position_ids=pos)
        return logits_of(out)[:, :n]

    def forward(self, batch, keys, position=None, batch_size=None, batch_key=None, **_):
        if batch.shape[1] % self.block:
            raise ValueError(f"block_size={self.block} does not fit the sequence: {batch.shape[1]} tokens are not "
                             "whole blocks")  # fmt: skip
        t = block_t(keys, batch.shape[1] // self.block, self.eps, self.t_sampling, position, batch_size, batch_key)
        c = block_noise(batch, keys, t, self.info, self.block)
        logits = self.vectorized_logits(c.inputs, batch)  # (B, L, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), reduction="none")  # (B*L,)
        loss = (ce * c.weights.flatten()).sum() / (batch != self.info.pad_id).sum().clamp(min=1)  # nats per token
        metrics = {
            "masked_ce": ce.sum().detach() / c.mask.sum().clamp(min=1),
            "mask_frac": c.mask.float().mean().detach(),
        }
        return loss, metrics

    def flop_groups(self):
        """Every parameter sees 2L tokens per example of L: the clean copy rides along (for masklab.compare)."""
        from masklab.compare.flops import matmul_params

        return [(matmul_params(self), 2.0)]

    @torch.no_grad()
    def evaluate(self, examples, seed=0, batch_size=32, max_batches=None):
        """The NELBO in bits per token on held-out data, t stratified over each batch's rows x blocks."""
        saved, self.t_sampling = self.t_sampling, "stratified"
        try:
            out = super().evaluate(examples, seed, batch_size, max_batches)
        finally:
            self.t_sampling = saved
        out["nll_bound_bits"] = out["loss"] / math.log(2)
        return out
