"""Mixture-of-Experts routing as a mask over experts: which expert may see which token.

A router scores each of T tokens against E experts. The routing is a ``(T, E)`` boolean mask (the pairs that are
computed) and a ``(T, E)`` gate weight; the layer's output for token t is ``sum_e gate[t, e] * expert_e(x_t)``
over the pairs of the mask (Cai et al. 2024, "A Survey on Mixture of Experts", arXiv:2407.06204, Sec. 2.2,
Eq. 2-3: sparse gating). Each router is one entry of :data:`ROUTER` with one signature,
``(logits (T, E), k, capacity_factor, **options) -> Routing``:

- ``top-k`` (token choice; Shazeer et al. 2017, Eq. 3-5; Switch, Fedus et al. 2022, Eq. 1-2): each token picks
  its k most probable experts. Gates are the softmax probabilities, renormalised over the k picked ones when
  k > 1 (Mixtral, GShard Alg. 1); with k = 1 the gate is the probability itself, so the task loss still reaches
  the router (Switch Sec. 2.1).
- capacity and drops (Switch Eq. 3): each expert computes at most ``C = ceil(capacity_factor * k * T / E)``
  tokens, first come first served in token order, every token's first choice before any second choice
  (GShard Alg. 1). A pair over capacity is dropped; a token whose every pair is dropped gets a zero output, so the
  decoder layer's residual carries it unchanged (Switch Sec. 2.2). ``capacity_factor = 0``: no capacity.
- ``expert-choice`` (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", Eq. 1): ``S =
  softmax(X W_g)`` over experts, and each expert takes its top-C tokens by S with the same C, so every expert is
  full and a token may get 0..E experts; gates are S at the chosen pairs. Tokens are ranked across the whole
  batch, so in a causal LM a token's routing depends on later tokens (the paper's own caveat, Sec. 5).

The losses, on a :class:`Routing`:

- :func:`load_balancing_loss` (Switch Eq. 4-6): ``E * sum_i f_i * P_i``, with f_i the fraction of the router's
  (token, choice) pairs that go to expert i (before drops, not differentiable) and P_i the mean router probability
  of expert i. Uniform routing gives 1. (Hugging Face's ``load_balancing_loss_func`` divides the counts by T, not
  by k*T: it is k times this value.)
- :func:`router_z_loss` (ST-MoE, Zoph et al. 2022, Eq. 5): ``mean_t (logsumexp_e logits[t, e])^2``.

:class:`MoE` is the layer: a linear router, E experts (any modules ``(N, d) -> (N, d)``) and a router name. It
gathers each expert's tokens, so it computes only the pairs of the mask; :func:`dense_mixture` runs every expert on
every token and weights by the gates, the oracle it is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from masklab.registry import Registry

__all__ = [
    "ROUTER",
    "Routing",
    "capacity",
    "top_k",
    "expert_choice",
    "load_balancing_loss",
    "router_z_loss",
    "sparse_mixture",
    "dense_mixture",
    "MoE",
]

ROUTER = Registry("router", "MoE routers: (logits (T, E), k, capacity_factor, **options) -> Routing")


@dataclass(frozen=True)
class Routing:
    """Where T tokens go among E experts. Every field is ``(T, E)``."""

    chosen: torch.Tensor  # bool: the router's choice before capacity (token choice: each token's top-k)
    mask: torch.Tensor  # bool: the pairs computed: chosen and within the expert's capacity
    gates: torch.Tensor  # float: gate weight of each computed pair, 0 elsewhere (differentiable)
    probs: torch.Tensor  # float: the router's softmax over experts
    logits: torch.Tensor  # float: the router's logits

    @property
    def load(self) -> torch.Tensor:
        """(E,) tokens each expert computes."""
        return self.mask.sum(0)

    @property
    def dropped(self) -> torch.Tensor:
        """(T,) bool: tokens no expert computes (their MoE output is 0: the residual passes them through)."""
        return ~self.mask.any(-1)


def _check(logits, k, capacity_factor) -> tuple[int, int]:
    if not torch.is_tensor(logits) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (tokens, experts), got {getattr(logits, 'shape', logits)}")
    T, E = logits.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= E:
        raise ValueError(f"k must be an int in [1, {E}] (the number of experts), got {k!r}")
    if not isinstance(capacity_factor, (int, float)) or not capacity_factor >= 0:
        raise ValueError(f"capacity_factor must be >= 0, got {capacity_factor!r}")
    return T, E


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """The router's numbers in float32 or wider: ST-MoE Sec. 3 ("selective precision"; exp of bf16 logits)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def capacity(tokens: int, experts: int, k: int, capacity_factor: float) -> int:
    """Switch Eq. 3 with k choices per token: ``ceil(capacity_factor * k * tokens / experts)``, at most ``tokens``;
    ``capacity_factor = 0`` means no limit (``tokens``)."""
    if capacity_factor == 0:
        return tokens
    return min(tokens, math.ceil(capacity_factor * k * tokens / experts))


@ROUTER.register("top-k", "token choice: each token's top-k experts, first come first served up to capacity")
def top_k(logits, k: int = 1, capacity_factor: float = 1.25, renormalize: bool | None = None) -> Routing:
    """Token-choice routing (see the module docstring). ``renormalize``: gates summed to 1 over the k choices
    (default: when k > 1)."""
    T, E = _check(logits, k, capacity_factor)
    probs = _at_least_fp32(logits).softmax(-1)  # (T, E)
    top_p, top_i = probs.topk(k, dim=-1)  # (T, k)
    if (k > 1) if renormalize is None else renormalize:  # Mixtral / GShard; Switch's top-1 keeps p
        top_p = top_p / top_p.sum(-1, keepdim=True)
    onehot = F.one_hot(top_i, E)  # (T, k, E)
    # queue position of each (token, choice) at its expert: all first choices in token order, then all second
    slot_major = onehot.transpose(0, 1).reshape(k * T, E)  # (k*T, E)
    position = (slot_major.cumsum(0) - 1).reshape(k, T, E).transpose(0, 1)  # (T, k, E)
    fits = (position < capacity(T, E, k, capacity_factor)) & onehot.bool()  # (T, k, E)
    chosen = onehot.bool().any(1)  # (T, E): the k choices are distinct experts
    mask = fits.any(1)
    gates = torch.zeros_like(probs).scatter(1, top_i, top_p) * mask
    return Routing(chosen, mask, gates, probs, logits)


@ROUTER.register("expert-choice", "expert choice: each expert takes its top-C tokens (Zhou et al. 2022)")
def expert_choice(logits, k: int = 1, capacity_factor: float = 1.0) -> Routing:
    """Expert-choice routing: each expert computes exactly ``C = capacity(T, E, k, capacity_factor)`` tokens, its
    C most probable ones, so a token gets ``k * capacity_factor`` experts on average (see the module docstring)."""
    T, E = _check(logits, k, capacity_factor)
    if capacity_factor == 0:
        raise ValueError("capacity_factor must be > 0 for expert choice: it sets how many tokens each expert takes")
    probs = _at_least_fp32(logits).softmax(-1)  # (T, E): S of Zhou et al. Eq. 1
    idx = probs.topk(capacity(T, E, k, capacity_factor), dim=0).indices  # (C, E): each expert's tokens
    mask = torch.zeros_like(probs, dtype=torch.bool).scatter(0, idx, True)
    return Routing(mask, mask, probs * mask, probs, logits)


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch Transformer's auxiliary loss (Fedus et al. 2022, Eq. 4-6): ``E * sum_i f_i * P_i``, f_i the share of
    the router's choices that go to expert i (before capacity), P_i the mean probability of expert i. Its minimum
    1 is reached by uniform routing; multiply by alpha (Switch: 1e-2) in the objective."""
    E = routing.probs.shape[-1]
    chosen = routing.chosen.to(routing.probs.dtype)
    f = chosen.sum(0) / chosen.sum().clamp(min=1)  # (E,)
    P = routing.probs.mean(0)  # (E,)
    return E * (f * P).sum()


def router_z_loss(routing: Routing) -> torch.Tensor:
    """ST-MoE's router z-loss (Zoph et al. 2022, Eq. 5): the mean over tokens of ``logsumexp(logits)^2``; it keeps
    router logits small (multiply by c_z, ST-MoE: 1e-3)."""
    return torch.logsumexp(_at_least_fp32(routing.logits), dim=-1).square().mean()


def sparse_mixture(x: torch.Tensor, experts, routing: Routing) -> torch.Tensor:
    """``(T, d)`` output: each expert runs on the tokens of its column of the mask only, weighted by the gates."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):  # a loop over E experts, not over tokens
        idx = routing.mask[:, e].nonzero().squeeze(1)  # (n_e,) the expert's tokens
        if idx.numel():
            y = expert(x[idx]) * routing.gates[idx, e, None].to(x.dtype)  # (n_e, d)
            out = out.index_add(0, idx, y)
    return out


def dense_mixture(x: torch.Tensor, experts, gates: torch.Tensor) -> torch.Tensor:
    """The dense form: every expert on every token, ``sum_e gates[:, e] * expert_e(x)`` (Eq. 1 of the survey);
    with the routing's gates (0 off the mask) it equals :func:`sparse_mixture`. The test oracle."""
    return sum(gates[:, e, None].to(x.dtype) * expert(x) for e, expert in enumerate(experts))


class MoE(nn.Module):
    """A sparse MoE feed-forward layer: ``forward(x (..., d)) -> (..., d)``.

    ``experts``: E modules mapping ``(N, d) -> (N, d)`` (a Llama MLP each, in :mod:`masklab.models.moe_llama`);
    ``routing``: a :data:`ROUTER` name; ``k`` and ``capacity_factor`` as there. After each call ``aux`` holds the
    two losses of this call (differentiable: the objective adds them) and ``stats`` the detached expert load (E,)
    and the dropped share, for logging and :func:`masklab.viz.moe.expert_load_figure`.
    """

    def __init__(self, hidden: int, experts, *, k: int = 1, routing: str = "top-k", capacity_factor: float = 1.25):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        E = len(self.experts)
        if E == 0:
            raise ValueError("experts must hold at least one expert")
        _check(torch.zeros(1, E), k, capacity_factor)  # k in [1, E], capacity_factor >= 0
        ROUTER[routing]  # a ValueError naming the routers if unknown
        if routing == "expert-choice" and capacity_factor == 0:
            raise ValueError("capacity_factor must be > 0 for expert choice")
        self.router = nn.Linear(hidden, E, bias=False)
        self.k, self.routing, self.capacity_factor = k, routing, capacity_factor
        self.aux: dict[str, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}

    def route(self, x: torch.Tensor) -> Routing:
        """The routing of ``x`` ``(T, d)``."""
        return ROUTER.get(self.routing)(self.router(x), self.k, self.capacity_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (T, d): every token of the batch competes for the same capacity
        r = self.route(flat)
        self.aux = {"balance": load_balancing_loss(r), "z": router_z_loss(r)}
        self.stats = {"load": r.load.detach(), "dropped": r.dropped.float().mean().detach()}
        return sparse_mixture(flat, self.experts, r).view_as(x)

    def expert_parameters(self) -> list[nn.Parameter]:
        """The experts' parameters: each token runs through a share of them only (see ``active_share``)."""
        return list(self.experts.parameters())

    def active_share(self) -> float:
        """The expected share of expert parameters one token runs through: ``k / E``, capacity drops aside (expert
        choice: ``k * capacity_factor / E``)."""
        share = self.k / len(self.experts)
        return share * self.capacity_factor if self.routing == "expert-choice" else share
