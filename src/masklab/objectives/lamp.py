"""LaMP's two training signals on motion tokens (Li et al. 2025, ICLR; the model and its reference files are in
:mod:`masklab.models.lamp`):

- Contrastive text-motion alignment (the reference ``loss_ptc``): s_ij = exp(logit_scale) <t_i, m_j> between the
  unit-norm text and motion features of a batch; cross-entropy with label smoothing 0.1 from text to motion and
  from motion to text, averaged (InfoNCE both ways, as CLIP). Templated captions repeat inside a batch, so every
  pair with the same parameters is a positive: the target row is uniform over them (with one positive per row
  this is exactly CLIP's / the reference's diagonal target).
- Masked motion-token prediction conditioned on the text (the reference ``MaskTransformer.forward``): per motion
  a time u ~ U(0, 1) masks round(cos(pi u / 2) T) tokens (at least one) chosen by a random permutation; of those,
  10% become a random code, 88% of the rest the mask id and the others stay (the reference's BERT scheme); the
  condition is the text feature, zeroed with probability ``cond_drop`` (0.1) for classifier-free guidance; the
  loss is the cross-entropy on the masked tokens.

The condition is the text feature with its gradient stopped: LaMP trains its masked transformer on the frozen,
pretrained LaMP text encoder (a second stage); here both losses train in one loop, and only the contrastive loss
shapes the text head. ``contrastive_weight=0`` then conditions the generator on an untrained head over the frozen
sentence embeddings (the text features of a language-only encoder, LaMP's CLIP baseline in spirit).

Not implemented: the motion-text matching loss (``loss_ptm``), the captioning LM loss (``loss_lm``) and the
Q-Former's text-to-motion token loss (``loss_gen``) of LaMP's pretraining stage, and the motion captioning LLM.
Randomness is keyed on each example's key (:mod:`masklab.corrupt.keyed`).
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.models.lamp import LaMP, cosine_schedule
from masklab.objectives.base import Objective

__all__ = ["LaMPObjective", "info_nce", "motion_token_mask", "retrieval_r1"]

SALT_TIME, SALT_ORDER, SALT_REPLACE, SALT_KEEP, SALT_TOKEN, SALT_DROP = (
    zlib.crc32(f"lamp.{s}".encode()) for s in ("time", "order", "replace", "keep", "token", "drop")
)


def info_nce(text: torch.Tensor, motion: torch.Tensor, groups: torch.Tensor, scale: torch.Tensor,
             label_smoothing: float = 0.1) -> torch.Tensor:  # fmt: skip
    """Symmetric InfoNCE of unit-norm ``text``, ``motion`` [B, E] whose rows ``i, j`` are positives when
    ``groups[i] == groups[j]`` (the target is uniform over a row's positives); ``scale`` is exp(logit_scale)."""
    logits = scale * text @ motion.T  # (B, B) text i against motion j
    pos = (groups[:, None] == groups[None, :]).to(logits.dtype)
    target = pos / pos.sum(1, keepdim=True)  # symmetric: the same targets read by columns
    t2m = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    m2t = F.cross_entropy(logits.T, target, label_smoothing=label_smoothing)
    return (t2m + m2t) / 2


def motion_token_mask(keys: torch.Tensor, length: int) -> torch.Tensor:
    """[B, T] bool: round(cos(pi u / 2) T) positions (at least 1) masked per row, u and the positions keyed."""
    u = keyed.uniform(keyed.derive(keys, SALT_TIME), 1, dtype=torch.float64)[:, 0]  # (B,)
    n = (cosine_schedule(u) * length).round().clamp(min=1)
    order = keyed.uniform(keyed.derive(keys, SALT_ORDER), length, dtype=torch.float64)  # (B, T) random permutation
    rank = order.argsort(1).argsort(1)
    return rank < n[:, None]


def retrieval_r1(text: torch.Tensor, motion: torch.Tensor, groups: torch.Tensor) -> tuple[float, float]:
    """(text-to-motion, motion-to-text) recall at 1: the share of queries whose most similar item of the other
    side (by inner product) has the query's group."""
    sim = text.float() @ motion.float().T  # (N, N)
    t2m = (groups[sim.argmax(1)] == groups).float().mean()
    m2t = (groups[sim.argmax(0)] == groups).float().mean()
    return float(t2m), float(m2t)


class LaMPObjective(Objective):
    """``forward(rows [B, T + 2], keys)``: each row is T motion token ids, then its caption index (into the model's
    caption table), then its parameter group (same group: a positive pair). See the module docstring."""

    name = "lamp"

    def __init__(self, model: LaMP, contrastive_weight: float = 1.0, generation_weight: float = 1.0,
                 cond_drop: float = 0.1, label_smoothing: float = 0.1, replace_prob: float = 0.1,
                 mask_prob: float = 0.88):  # fmt: skip
        super().__init__(model)
        if min(contrastive_weight, generation_weight) < 0 or contrastive_weight + generation_weight == 0:
            raise ValueError("contrastive_weight and generation_weight must be >= 0, not both 0")
        for name, p in (("cond_drop", cond_drop), ("label_smoothing", label_smoothing),
                        ("replace_prob", replace_prob), ("mask_prob", mask_prob)):  # fmt: skip
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.contrastive_weight, self.generation_weight = contrastive_weight, generation_weight
        self.cond_drop, self.label_smoothing = cond_drop, label_smoothing
        self.replace_prob, self.mask_prob = replace_prob, mask_prob

    def corrupt(self, ids: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids [B, T], masked [B, T]): the reference's masking of motion tokens (module docstring)."""
        B, T = ids.shape
        K = self.model.quantizer.size
        masked = motion_token_mask(keys, T).to(ids.device)
        u_rep = keyed.uniform(keyed.derive(keys, SALT_REPLACE), T).to(ids.device)
        u_keep = keyed.uniform(keyed.derive(keys, SALT_KEEP), T).to(ids.device)
        random_ids = (keyed.uniform(keyed.derive(keys, SALT_TOKEN), T, dtype=torch.float64) * K).long().clamp(max=K - 1)
        replace = masked & (u_rep < self.replace_prob)
        to_mask = masked & ~replace & (u_keep < self.mask_prob)
        x = torch.where(replace, random_ids.to(ids.device), ids)
        return x.masked_fill(to_mask, self.model.generator.mask_id), masked

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        ids, caption, group = batch[:, :-2], batch[:, -2], batch[:, -1]
        m = self.model
        text = m.text_features(caption)  # (B, E)
        loss = torch.zeros((), device=batch.device)
        metrics = {}
        if self.contrastive_weight > 0:
            motion = m.motion_features(ids)
            scale = m.logit_scale.exp().clamp(max=100.0)  # CLIP's cap
            l_c = info_nce(text, motion, group, scale, self.label_smoothing)
            loss = loss + self.contrastive_weight * l_c
            t2m, m2t = retrieval_r1(text.detach(), motion.detach(), group)
            metrics.update(contrastive=l_c.detach(), t2m_r1_batch=torch.tensor(t2m), m2t_r1_batch=torch.tensor(m2t))
        if self.generation_weight > 0:
            x, masked = self.corrupt(ids, keys)
            drop = keyed.uniform(keyed.derive(keys, SALT_DROP), 1)[:, 0].to(batch.device) < self.cond_drop
            logits = m.generator(x, text.detach(), drop if self.training else None)  # (B, T, K)
            l_g = F.cross_entropy(logits[masked], ids[masked])
            loss = loss + self.generation_weight * l_g
            acc = (logits[masked].argmax(-1) == ids[masked]).float().mean()
            metrics.update(generation=l_g.detach(), token_acc=acc.detach())
        return loss, metrics

    def flop_groups(self):
        """Parameters by the share of a motion's T tokens they see: the masked transformer's blocks see T + 1
        positions (the condition first), its head T; the motion tower T; the text head and the condition's
        embedding one vector per motion."""
        from masklab.compare.flops import matmul_params

        m, T = self.model, self.model.config.length
        g = m.generator
        groups = [(matmul_params(m.text_head), 1 / T)]
        if self.contrastive_weight > 0:
            groups += [([m.motion_pos, *matmul_params(m.motion_blocks), *m.motion_norm.parameters()], 1.0),
                       ([*m.motion_proj.parameters(), m.logit_scale], 1 / T)]  # fmt: skip
        if self.generation_weight > 0:
            groups += [([g.pos, *matmul_params(g.blocks), *g.norm.parameters()], (T + 1) / T),
                       (list(g.head.parameters()), 1.0), (list(g.cond_emb.parameters()), 1 / T)]  # fmt: skip
        return groups
