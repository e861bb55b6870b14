"""ADJUST (Bansal & Sanghavi 2025, "Enabling Approximate Joint Sampling in Diffusion LMs"): a one-layer sampler
head on a frozen masked-diffusion model, trained by KL to the model's own one-token-at-a-time conditionals.

Exact joint sampling from an MDM reveals one token per full forward: after revealing x_j the next position i is
drawn from p(x_i | x_t, x_j), which needs a new forward. ADJUST reuses the one forward at x_t for K tokens: the
first is drawn from the model's p(x_i | x_t), each later one from the head's

    q(x_i | h(x_t), S) = softmax( logits(x_t)_i + W_out Layer( P h(x_t) + E[S] + E_pos )_i )

where h(x_t) [B, L, D] is what the frozen model gives at x_t (its last hidden states; for a model that returns
only logits, its log-marginals and the ids), S the tokens revealed since that forward (E[S]: their embeddings at
their positions, a "none" embedding elsewhere) and Layer one bidirectional transformer block. The training loss
is the paper's: KL from the exact conditional to the head's,

    L = E_{x_t, S} mean_{i in M(x_t) \\ S} KL( p(x_i | x_t with S revealed) || q(x_i | h(x_t), S) ),

the target coming from a second forward of the frozen model at x_t with S revealed.

Training states (the batch's shape says which):

- trajectories [B, 2, L] (ids, reveal step): the frozen model's own one-token-per-forward decodings
  (:func:`trajectories`), as the paper trains on the base model's denoising trajectories. A state x_t is a
  trajectory cut at a uniform step j; S the next m ~ U{1..k-1} tokens of the same trajectory, so S is drawn from
  the model's exact joint in its own reveal order (random or top-confidence). By the chain rule the KL between
  the exact joint of a step's k tokens and ADJUST's is the sum over j of E_{S ~ p} KL(p(x_i | x_t, S_<j) ||
  q(x_i | h(x_t), S_<j)), which is what these states sample;
- data [B, L]: x_t masks each position w.p. t ~ U(eps, 1) and S holds the data's own tokens at a uniform subset
  of the masked positions. On an exact HMM the data are samples from the model, so in a random order the two
  agree in distribution; on text they do not.

Deviations (listed in docs/adjust.md): W_out is a zero-initialised correction added to the frozen model's logits
(the paper's layer ends in the base model's LM head), so an untrained head samples exactly like marginal parallel
decoding; the KL is averaged over every masked, unrevealed position, not only the one revealed next.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import keyed
from masklab.models.blocks import transformer_encoder
from masklab.objectives.base import Objective, logits_of

__all__ = ["AdjustHead", "AdjustObjective", "base_call", "fingerprint", "feature_dim", "trajectories"]

_ADJUST_KEY = 0xAD705  # derive(keys, this): the objective's own stream family (t, revealed set, its size)
_LOG_FLOOR = -20.0  # log-marginal features are clamped here: an exact model's log(1e-300) would swamp LayerNorm


class AdjustHead(nn.Module):
    """``forward(features [B, L, F], new [B, L], base_logits [B, L, V], pad [B, L] | None) -> logits [B, L, V]``.

    ``new`` holds the token revealed at each position since the full forward, or ``vocab`` ("none"). The output
    layer starts at zero: the untrained head returns ``base_logits`` exactly."""

    def __init__(self, in_dim: int, vocab: int, max_len: int, dim: int = 128, heads: int = 4, ff: int = 512):
        super().__init__()
        self.vocab, self.max_len = vocab, max_len
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim))  # P: the frozen model's features
        self.tok = nn.Embedding(vocab + 1, dim)  # E[S]; row ``vocab``: no token revealed here
        self.pos = nn.Embedding(max_len, dim)
        self.layer = transformer_encoder(dim, 1, heads, ff)  # the single layer
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)
        nn.init.zeros_(self.out.weight)  # zero correction at init: q = p(x_i | x_t), marginal decoding
        nn.init.zeros_(self.out.bias)

    def forward(self, features, new, base_logits, pad=None):
        return base_logits.float() + self.correction(features, new, pad)  # (B, L, V)

    def correction(self, features, new, pad=None):
        """The head's change [B, L, V] to the frozen model's logits."""
        L = new.shape[1]
        if L > self.max_len:
            raise ValueError(f"the head was trained on at most {self.max_len} positions, got {L}")
        h = self.inp(features.float()) + self.tok(new) + self.pos.weight[:L]  # (B, L, dim)
        h = self.layer(h, src_key_padding_mask=pad)
        return self.out(self.norm(h))


def feature_dim(model, vocab: int) -> int:
    """Width F of :func:`base_call`'s features: the hidden size of a Hugging Face model, else 2V + 1."""
    config = getattr(model, "config", None)
    return int(config.hidden_size) if config is not None else 2 * vocab + 1


def base_call(model, pad_id: int | None = None):
    """A callable ``x [B, L] -> (logits [B, L, V], features [B, L, F])`` of the frozen model, without grad.

    A Hugging Face model gives its last hidden states (``output_hidden_states``, as the paper's layer reads); a
    model that returns only logits (the exact HMM) gives its log-marginals (floored at -20) beside a one-hot of
    the ids it saw (V symbols and the mask, ids >= V counted as the mask), since nothing else of it is hidden."""

    def call(x):
        with torch.no_grad():
            if hasattr(model, "config"):
                kw = {"attention_mask": (x != pad_id).long()} if pad_id is not None else {}
                out = model(input_ids=x, output_hidden_states=True, **kw)
                return out.logits, out.hidden_states[-1]
            logits = logits_of(model(x))
            V = logits.shape[-1]
            seen = F.one_hot(x.clamp(max=V), V + 1).to(logits.dtype)  # (B, L, V + 1)
            return logits, torch.cat([logits.float().log_softmax(-1).clamp(min=_LOG_FLOOR), seen], -1)

    return call


def fingerprint(model) -> str:
    """SHA-256 (16 hex digits) of a model's weights: names, shapes, dtypes and bytes of its state dict (an
    ``nn.Module``), or of its tensor attributes and the state dicts of its module attributes (the exact HMM's
    start, transition and emission tables; a wrapper holding a model). Two models with the same fingerprint
    compute the same function (given the same code), as far as their weights are held in those attributes: a
    plain function's closure is not read."""
    if isinstance(model, nn.Module):
        tensors = model.state_dict()
    else:
        tensors = {k: v for k, v in vars(model).items() if torch.is_tensor(v)}
        for k, v in vars(model).items():  # a wrapper's model: its weights are the wrapper's
            if isinstance(v, nn.Module):
                tensors.update({f"{k}.{n}": t for n, t in v.state_dict().items()})
    h = hashlib.sha256(type(model).__name__.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        # flattened first: a 0-dim tensor (a scalar parameter, BatchNorm's step count) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _reveal_draw(keys, L: int, mask: torch.Tensor, k: int, eps: float):
    """(masked M [B, L], revealed S [B, L]) for each example: M masks each position w.p. t ~ U(eps, 1) (the MDM
    forward process; positions where ``mask`` is False never), S is a uniform subset of M of size m ~ U{1..k-1},
    at most |M| - 1 so that one position is left to predict."""
    kk = keyed.derive(keys, _ADJUST_KEY)
    u = keyed.uniform(kk, L + 2, stream=0, dtype=torch.float64).to(mask.device)  # (B, L + 2)
    t = eps + (1 - eps) * u[:, L]  # (B,)
    masked = (u[:, :L] < t[:, None]) & mask
    n = masked.sum(1)
    m = (1 + (u[:, L + 1] * (k - 1)).long()).clamp(max=(n - 1).clamp(min=0))  # (B,) 0 when |M| < 2
    order = keyed.uniform(kk, L, stream=1, dtype=torch.float64).to(mask.device).masked_fill(~masked, 2.0)
    rank = order.argsort(1).argsort(1)  # rank among the row's masked positions (unmasked ones last)
    return masked, masked & (rank < m[:, None])


def _trajectory_draw(keys, ids: torch.Tensor, step: torch.Tensor, k: int):
    """(masked M [B, L], revealed S [B, L]) cut from trajectories: ``step`` [B, L] is each generated position's
    reveal step (0, 1, ... in one-token-per-forward decoding; -1 for the prompt). M: the positions revealed at
    step >= j for j uniform over 0 .. n - 2 (n: the row's steps); S: those revealed at steps j .. j + m - 1,
    m ~ U{1..k-1}, at most |M| - 1 so that one position is left to predict."""
    kk = keyed.derive(keys, _ADJUST_KEY)
    u = keyed.uniform(kk, 2, stream=2, dtype=torch.float64).to(ids.device)  # (B, 2)
    n = (step >= 0).sum(1)  # (B,) generated positions
    j = (u[:, 0] * (n - 1)).long().clamp(min=0)  # (B,) the cut, uniform over 0 .. n - 2: two or more left
    masked = step >= j[:, None]
    left = masked.sum(1)
    m = (1 + (u[:, 1] * (k - 1)).long()).clamp(max=(left - 1).clamp(min=0))
    return masked, masked & (step < (j + m)[:, None])


def trajectories(model, x: torch.Tensor, *, mask_id: int, remasking: str, seed: int, batch: int = 32):
    """[B, 2, L] (ids, reveal step) of the frozen ``model``'s own one-token-per-forward decodings of the masks of
    ``x`` [B, L] (``confidence`` with ``remasking`` and one token per step, temperature 1, row r from key seed + r):
    the training states of :class:`AdjustObjective`, each step an exact draw from the model's conditionals."""
    from masklab.sample import generate

    out = []
    for r in range(0, x.shape[0], batch):
        part = x[r : r + batch]
        seeds = [seed + r + i for i in range(part.shape[0])]
        g = generate(model, part, mask_id=mask_id, sampler="confidence", remasking=remasking, seed=seeds,
                     return_order=True)  # fmt: skip
        out.append(torch.stack([g.ids, g.order], 1))
    return torch.cat(out)


class AdjustObjective(Objective):
    """``forward(x0 [B, L], keys) -> (mean KL(exact || head) over the masked, unrevealed positions, metrics)``.

    ``model`` is the :class:`AdjustHead` (the one trained and saved); ``base`` the frozen MDM (an ``nn.Module``
    is put in eval mode with no grad; any callable ids -> logits works). ``k``: tokens per full forward the head
    is trained for (it sees up to k - 1 revealed tokens). Metrics: ``kl_marginal``, the same KL for the frozen
    model's own marginals (what marginal parallel decoding draws from), and ``kl_head``."""

    name = "adjust"

    def __init__(self, model: AdjustHead, base, *, mask_id: int, k: int, pad_id: int | None = None, eps=1e-3):
        super().__init__(model)
        if k < 2:
            raise ValueError(f"k (tokens per full forward) must be >= 2 to train a head, got {k}")
        if isinstance(base, nn.Module):
            base = base.eval().requires_grad_(False)
        self.base, self.mask_id, self.k, self.pad_id, self.eps = base, mask_id, k, pad_id, eps
        self.call = base_call(base, pad_id)

    def train(self, mode: bool = True):
        super().train(mode)
        if isinstance(self.base, nn.Module):
            self.base.eval()  # frozen: no dropout, no update
        return self

    def flop_groups(self):
        """The head runs once, forward and backward; the frozen base twice (at x_t and with S revealed), forward
        only. A base that is not a module (the exact HMM) has no weights to count."""
        from masklab.compare.flops import matmul_params

        groups = [(matmul_params(self.model), 1.0)]
        if isinstance(self.base, nn.Module):
            groups.append((matmul_params(self.base), 2.0))
        return groups

    def _log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """log-softmax in float32 with the mask token excluded (never a sample, as in the samplers)."""
        logits = logits.float()
        if self.mask_id < logits.shape[-1]:
            logits = logits.clone()
            logits[..., self.mask_id] = float("-inf")
        return logits.log_softmax(-1)

    def forward(self, batch, keys, **_):
        if batch.dim() == 3:  # trajectories: (ids, reveal step)
            x0, step = batch[:, 0], batch[:, 1]
            masked, revealed = _trajectory_draw(keys, x0, step, self.k)
            pad = x0 == self.pad_id if self.pad_id is not None else None
        else:
            x0 = batch
            can = x0 != self.pad_id if self.pad_id is not None else torch.ones_like(x0, dtype=torch.bool)
            masked, revealed = _reveal_draw(keys, x0.shape[1], can, self.k, self.eps)
            pad = ~can if self.pad_id is not None else None
        xt = x0.masked_fill(masked, self.mask_id)
        xs = x0.masked_fill(masked & ~revealed, self.mask_id)
        logits_t, feats = self.call(xt)  # (B, L, V), (B, L, F)
        target = self._log_probs(self.call(xs)[0])  # exact p(x_i | x_t with S revealed)
        V = logits_t.shape[-1]
        new = torch.where(revealed, x0, V)
        q = self._log_probs(self.model(feats, new, logits_t, pad))
        where = (masked & ~revealed).float()  # (B, L) the positions predicted next

        def kl(logq):  # (B,) mean over a row's predicted positions of KL(p || q); 0 for a row without any
            terms = target.exp() * (target - logq)  # (B, L, V); NaN where p = 0 and q = 0 (the mask token)
            per = torch.where(target.isfinite(), terms, 0.0).sum(-1)  # (B, L); 0 log 0 = 0
            return (per * where).sum(1) / where.sum(1).clamp(min=1)

        rows = (where.sum(1) > 0).float()
        denom = rows.sum().clamp(min=1)
        loss = (kl(q) * rows).sum() / denom
        with torch.no_grad():
            logm = self._log_probs(logits_t)
            metrics = {"kl_head": loss.detach(), "kl_marginal": (kl(logm) * rows).sum() / denom}
            if batch.dim() == 3:  # the chain rule's term: the KL at the position the trajectory reveals next
                left = step.masked_fill(where == 0, torch.iinfo(step.dtype).max)
                where = ((step == left.min(1, keepdim=True).values) & (where > 0)).float()
                metrics["kl_next_head"] = (kl(q.detach()) * rows).sum() / denom
                metrics["kl_next_marginal"] = (kl(logm) * rows).sum() / denom
        return loss, metrics
