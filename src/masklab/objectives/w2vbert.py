"""W2v-BERT on frame sequences (Chung et al. 2021, "w2v-BERT: Combining Contrastive Learning and Masked Language
Modeling for Self-Supervised Speech Pre-Training", Sec. 3), with wav2vec 2.0's quantizer and contrastive task
(Baevski et al. 2020, Sec. 2 and 3.2; fairseq ``modules/gumbel_vector_quantizer.py`` and
``models/wav2vec/wav2vec2.py``).

- Feature encoder: a linear map of each frame, layer-normalized (w2v-BERT: two strided 2-D convolutions over
  log-mel features; the synthetic frames need no subsampling).
- Contrastive module: spans of the feature sequence are masked (:func:`masklab.corrupt.frames.span_mask`,
  wav2vec 2.0's p = 0.065, M = 10) and replaced by random vectors (w2v-BERT Sec. 3.2: random vectors, not
  wav2vec 2.0's learned one), then a linear projection and transformer blocks give the context vectors c_t.
- Quantizer (:class:`GumbelVectorQuantizer`): the unmasked features pass through G groups of V codebook entries
  each, chosen by a straight-through Gumbel softmax (wav2vec 2.0 Eq. 1-2) whose temperature anneals from
  tau_max by a factor per optimizer step down to tau_min; the code ids are the MLM targets.
- Contrastive loss (wav2vec 2.0 Eq. 3): at each masked frame the projected c_t must pick its quantized q_t among
  K distractors drawn uniformly from the other masked frames of the same utterance, by cosine similarity over a
  temperature kappa; plus alpha times the codebook diversity loss (Eq. 4, in fairseq's form (GV - perplexity) /
  GV of the batch-averaged softmax): L_c = L_w + alpha L_d.
- Masked prediction module: more transformer blocks over the context vectors; a linear head predicts each masked
  frame's code id (one softmax per group): L_m, the cross-entropy.
- Trained end to end: L = beta L_c + gamma L_m (w2v-BERT Eq. 3, beta = gamma = 1). gamma = 0 with no masked
  prediction blocks is the contrastive module alone (wav2vec 2.0 with this network).

Deliberate differences: transformer blocks (pre-norm, learned positions, as :mod:`masklab.objectives.frames`)
instead of conformer blocks; no padding inside a batch (the synthetic utterances have one length); distractors
are drawn per masked frame from its own utterance's masked frames even when rows have different masked counts
(fairseq needs equal counts); the quantizer sees every frame, so the diversity loss averages over all frames.
Randomness (span masks, random vectors, Gumbel noise, distractors) is keyed on each example's key.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import keyed
from masklab.models.blocks import transformer_encoder
from masklab.objectives.base import Objective

__all__ = ["GumbelVectorQuantizer", "Quantized", "W2vBERT", "W2vBERTObjective", "contrastive_loss",
           "sample_distractors", "diversity_loss", "code_state_nmi"]  # fmt: skip

# keyed.derive salts of the objective's draws (the masks take their streams from masklab.corrupt.frames)
SALT_NOISE, SALT_GUMBEL, SALT_NEGATIVES = (zlib.crc32(s.encode()) for s in ("w2vbert.noise", "gumbel", "negatives"))


@dataclass
class Quantized:
    q: torch.Tensor  # [B, T, code_dim] quantized vectors
    codes: torch.Tensor  # [B, T, G] chosen entry per group (the Gumbel sample in training, the argmax otherwise)
    perplexity: torch.Tensor  # scalar: sum over groups of exp(entropy of the batch-averaged softmax)


class GumbelVectorQuantizer(nn.Module):
    """wav2vec 2.0's product quantizer: ``forward(x [B, T, D], gumbel [B, T, G, V] or None) -> Quantized``.

    Logits l = W x per group; training picks argmax(l + g) with Gumbel noise ``g`` and passes the gradient of
    softmax((l + g) / tau) straight through; evaluation picks argmax(l). Each group's entry is a code_dim / G
    vector; the G of them are concatenated. ``updates`` counts optimizer steps (a buffer, saved with the model,
    so a resumed run anneals on): tau = max(tau_max * tau_decay ** updates, tau_min)."""

    def __init__(self, dim: int, groups: int, entries: int, code_dim: int, tau=(2.0, 0.5, 0.999995)):
        super().__init__()
        if groups < 1 or entries < 2 or code_dim % groups:
            raise ValueError(f"need groups >= 1, entries >= 2 and code_dim divisible by groups: {groups}, {entries}, "
                             f"{code_dim}")  # fmt: skip
        tau_max, tau_min, decay = tau
        if not 0 < tau_min <= tau_max or not 0 < decay <= 1:
            raise ValueError(f"tau must be (max, min, decay) with 0 < min <= max and decay in (0, 1], got {tau}")
        self.groups, self.entries, self.tau = groups, entries, (tau_max, tau_min, decay)
        self.weight_proj = nn.Linear(dim, groups * entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)  # fairseq's init
        nn.init.zeros_(self.weight_proj.bias)
        self.codevectors = nn.Parameter(torch.rand(groups, entries, code_dim // groups))  # fairseq: uniform_
        self.register_buffer("updates", torch.zeros((), dtype=torch.float64))

    def temperature(self) -> float:
        tau_max, tau_min, decay = self.tau
        return max(tau_max * decay ** int(self.updates.item() + 1e-9), tau_min)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, G, V] code logits."""
        return self.weight_proj(x).unflatten(-1, (self.groups, self.entries))

    def forward(self, x: torch.Tensor, gumbel: torch.Tensor | None = None) -> Quantized:
        logits = self.logits(x).float()  # (B, T, G, V)
        avg = logits.softmax(-1).flatten(0, 1).mean(0)  # (G, V) batch-averaged probabilities
        perplexity = torch.exp(-(avg * torch.log(avg + 1e-7)).sum(-1)).sum()
        if gumbel is not None:  # straight-through Gumbel softmax (F.gumbel_softmax(hard=True), keyed noise)
            soft = ((logits + gumbel) / self.temperature()).softmax(-1)
            codes = soft.argmax(-1)
            onehot = F.one_hot(codes, self.entries).to(soft.dtype) - soft.detach() + soft
        else:
            codes = logits.argmax(-1)
            onehot = F.one_hot(codes, self.entries).to(logits.dtype)
        q = torch.einsum("btgv,gvd->btgd", onehot.to(x.dtype), self.codevectors).flatten(-2)  # (B, T, code_dim)
        return Quantized(q, codes, perplexity)


def diversity_loss(perplexity: torch.Tensor, groups: int, entries: int) -> torch.Tensor:
    """wav2vec 2.0's L_d (fairseq ``(num_vars - prob_perplexity) / num_vars``): 0 when every entry is used
    equally often over the batch, near 1 when one entry takes all."""
    n = groups * entries
    return (n - perplexity) / n


def sample_distractors(mask: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions [B, T, k] int64, valid [B, T, 1] bool): for each masked frame, ``k`` distractor positions drawn
    uniformly with replacement from the *other* masked frames of its row (fairseq ``sample_negatives``: a draw
    over m - 1 ranks, shifted past the frame's own). A row with one masked frame has none (valid False)."""
    B, T = mask.shape
    m = mask.sum(1)  # (B,) masked frames per row
    rank = mask.long().cumsum(1) - 1  # (B, T) each masked frame's rank in its row
    by_rank = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, T): masked positions first, in order
    u = keyed.uniform(keyed.derive(keys, SALT_NEGATIVES), T * k).to(mask.device).view(B, T, k)
    draw = torch.floor(u * (m - 1).clamp(min=0)[:, None, None]).long()  # U{0 .. m - 2}
    draw = draw + (draw >= rank[..., None]).long()  # skip the frame itself
    pos = torch.gather(by_rank, 1, draw.clamp(max=T - 1).flatten(1)).view(B, T, k)
    return pos, (m > 1)[:, None, None].expand(B, T, 1)


def contrastive_loss(
    context: torch.Tensor, q: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor, valid: torch.Tensor,
    kappa: float,
) -> torch.Tensor:  # fmt: skip
    """wav2vec 2.0 Eq. 3 averaged over the masked frames: -log softmax over {q_t} u distractors of
    cos(c_t, .) / kappa, the true q_t first. ``context``, ``q`` [B, T, d]; ``negatives`` [B, T, K] positions and
    ``valid`` from :func:`sample_distractors`. A distractor equal to q_t (the same code) is left out, as fairseq
    does (``neg_is_pos``)."""
    rows, cols = mask.nonzero(as_tuple=True)  # (M,) masked frames
    pos = q[rows, cols]  # (M, d)
    negs = q[rows[:, None], negatives[rows, cols]]  # (M, K, d)
    cand = torch.cat([pos[:, None], negs], dim=1)  # (M, K + 1, d)
    c = F.normalize(context[rows, cols].float(), dim=-1)
    sim = torch.einsum("md,mkd->mk", c, F.normalize(cand.float(), dim=-1)) / kappa  # (M, K + 1)
    drop = (negs == pos[:, None]).all(-1) | ~valid[rows, cols]  # (M, K)
    sim = torch.cat([sim[:, :1], sim[:, 1:].masked_fill(drop, float("-inf"))], dim=1)
    return F.cross_entropy(sim, torch.zeros(len(sim), dtype=torch.long, device=sim.device))


def _blocks(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    return transformer_encoder(dim, depth, heads, 4 * dim)


@dataclass
class W2vBERTOutput:
    context: torch.Tensor  # [B, T, code_dim] context vectors projected into the code space (wav2vec 2.0 final_proj)
    quantized: Quantized
    mlm_logits: torch.Tensor | None  # [B, T, G, V], None without the masked prediction module


class W2vBERT(nn.Module):
    """Feature encoder, contrastive module, quantizer and masked prediction module (see the module docstring).
    ``forward(frames [B, T, F], mask [B, T], noise [B, T, D], gumbel [B, T, G, V] or None) -> W2vBERTOutput``."""

    def __init__(self, feat_dim: int, dim: int = 64, depth: int = 2, mlm_depth: int = 2, heads: int = 4,
                 groups: int = 1, entries: int = 32, code_dim: int | None = None, max_len: int = 1024,
                 tau=(2.0, 0.5, 0.999995)):  # fmt: skip
        super().__init__()
        if depth < 1 or mlm_depth < 0:
            raise ValueError(f"depth must be >= 1 and mlm_depth >= 0, got {depth} and {mlm_depth}")
        code_dim = code_dim or dim
        self.feature = nn.Linear(feat_dim, dim)
        self.feature_norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)  # the contrastive module's linear projection
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.contrastive = _blocks(dim, depth, heads)
        self.context_norm = nn.LayerNorm(dim)
        self.final_proj = nn.Linear(dim, code_dim)
        self.quantizer = GumbelVectorQuantizer(dim, groups, entries, code_dim, tau)
        self.mlm = _blocks(dim, mlm_depth, heads) if mlm_depth else None
        self.mlm_norm = nn.LayerNorm(dim) if mlm_depth else None
        self.mlm_head = nn.Linear(dim, groups * entries) if mlm_depth else None

    def encode_features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, D] feature encoder output (what the quantizer reads)."""
        if frames.shape[1] > self.pos.shape[0]:
            raise ValueError(f"sequence of {frames.shape[1]} frames is longer than max_len {self.pos.shape[0]}")
        return self.feature_norm(self.feature(frames))

    def _context(self, z: torch.Tensor) -> torch.Tensor:
        return self.context_norm(self.contrastive(self.proj(z) + self.pos[: z.shape[1]]))

    def _mlm(self, c: torch.Tensor) -> torch.Tensor:
        return self.mlm_norm(self.mlm(c))

    def forward(self, frames, mask, noise, gumbel=None) -> W2vBERTOutput:
        z = self.encode_features(frames)  # (B, T, D)
        c = self._context(torch.where(mask[..., None], noise.to(z.dtype), z))  # masked frames: random vectors
        mlm = None
        if self.mlm is not None:
            mlm = self.mlm_head(self._mlm(c)).unflatten(-1, (self.quantizer.groups, self.quantizer.entries))
        return W2vBERTOutput(self.final_proj(c), self.quantizer(z, gumbel), mlm)

    @torch.no_grad()
    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, D] per-frame representations with every frame visible: the masked prediction module's output
        (the contrastive module's without one), what the ``frames-state`` probe reads."""
        c = self._context(self.encode_features(frames))
        return self._mlm(c) if self.mlm is not None else c

    @torch.no_grad()
    def codes(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T] int64 the quantizer's code per frame (argmax; the G groups' entries as one number base V)."""
        codes = self.quantizer.logits(self.encode_features(frames)).argmax(-1)  # (B, T, G)
        base = self.quantizer.entries ** torch.arange(codes.shape[-1], device=codes.device)
        return (codes * base).sum(-1)


class W2vBERTObjective(Objective):
    """The loop's interface: ``forward(frames [B, T, F], keys) -> (loss, metrics)``; see the module docstring."""

    name = "w2v-bert"

    def __init__(self, model: W2vBERT, mask_prob: float = 0.065, mask_length: int = 10, negatives: int = 100,
                 kappa: float = 0.1, diversity_weight: float = 0.1, contrastive_weight: float = 1.0,
                 mlm_weight: float = 1.0):  # fmt: skip
        super().__init__(model)
        if mlm_weight > 0 and model.mlm is None:
            raise ValueError("mlm_weight > 0 needs a masked prediction module (mlm_depth >= 1)")
        if negatives < 1 or kappa <= 0 or min(diversity_weight, contrastive_weight, mlm_weight) < 0:
            raise ValueError("need negatives >= 1, kappa > 0 and non-negative loss weights")
        self.mask_prob, self.mask_length, self.negatives, self.kappa = mask_prob, mask_length, negatives, kappa
        self.alpha, self.beta, self.gamma = diversity_weight, contrastive_weight, mlm_weight

    def _draws(self, batch: torch.Tensor, keys: torch.Tensor):
        """Span mask [B, T], random vectors [B, T, D] and Gumbel noise [B, T, G, V] (training only), all keyed."""
        from masklab.corrupt.frames import span_mask

        B, T, _ = batch.shape
        m = self.model
        mask = span_mask((B, T), self.mask_prob, self.mask_length, keys=keys).to(batch.device)
        D, G, V = m.pos.shape[1], m.quantizer.groups, m.quantizer.entries
        u = keyed.uniform(keyed.derive(keys, SALT_NOISE), T * D, dtype=torch.float64)
        noise = torch.special.ndtri((u + 2.0**-25).clamp(max=1 - 2.0**-25)).float().view(B, T, D).to(batch.device)
        gumbel = None
        if self.training:
            u = keyed.uniform(keyed.derive(keys, SALT_GUMBEL), T * G * V, dtype=torch.float64) + 2.0**-25
            gumbel = (-torch.log(-torch.log(u))).float().view(B, T, G, V).to(batch.device)
        return mask, noise, gumbel

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        mask, noise, gumbel = self._draws(batch, keys)
        out = self.model(batch, mask, noise, gumbel)
        qz, quant = out.quantized, self.model.quantizer
        negatives, valid = sample_distractors(mask, keys, self.negatives)
        l_w = contrastive_loss(out.context, qz.q, mask, negatives.to(batch.device), valid.to(batch.device),
                               self.kappa)  # fmt: skip
        l_d = diversity_loss(qz.perplexity, quant.groups, quant.entries)
        loss = self.beta * (l_w + self.alpha * l_d)
        metrics = {"contrastive": l_w.detach(), "diversity": l_d.detach(), "perplexity": qz.perplexity.detach(),
                   "tau": torch.tensor(quant.temperature())}  # fmt: skip
        if out.mlm_logits is not None:
            target = qz.codes.detach()[mask]  # (M, G) the quantizer's token ids at the masked frames
            l_m = F.cross_entropy(out.mlm_logits[mask].flatten(0, 1), target.flatten())
            loss = loss + self.gamma * l_m
            metrics["mlm"] = l_m.detach()
        if self.training:  # one optimizer step per global batch, however it is split over ranks and micro-steps
            quant.updates += len(batch) * _world() / ctx.get("batch_size", len(batch))
        return loss, metrics


def _world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def code_state_nmi(codes: torch.Tensor, states: torch.Tensor) -> float:
    """Normalized mutual information between the chosen code and the hidden state of every frame (sklearn's
    ``normalized_mutual_info_score``, arithmetic normalization): 1 when the codes name the states exactly."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(states.flatten().cpu().numpy(), codes.flatten().cpu().numpy()))
