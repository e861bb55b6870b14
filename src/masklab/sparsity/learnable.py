"""Learnable N:M masks (MaskLLM: Fang et al., 2024, "MaskLLM: Learnable Semi-Structured Sparsity for Large
Language Models", NeurIPS).

Each group of ``m`` consecutive input weights picks one of the ``K = C(m, n)`` candidate patterns
``S in {0,1}^{K x m}`` (``nm_patterns``). The choice is a categorical distribution with learnable logits ``p``
per group. Training samples a differentiable mask with Gumbel-softmax (paper Eq. 4-5):

    y = softmax((kappa * p + g) / tau),   g ~ Gumbel(0, 1)       # (rows, groups, K)
    M~ = y @ S                                                     # (rows, groups, m) soft mask

with the temperature ``tau`` annealed (4 -> 0.05 in the paper) and the logit scale ``kappa`` grown
(1e2 -> 5e2) linearly over training. The weights are frozen; only the logits learn.

The reference is NVlabs/MaskLLM: ``learnable_sparsity/differentiable_mask.py`` (``DifferentiableMask``,
``init_diff_mask_from_prior``, ``sparse_weight_norm``) and ``pretrain_maskllm.py`` (``loss_func``).

- **Init** (``DifferentiableMask.__init__``): logits ``p ~ N(0, 0.01)``, drawn from a generator keyed on
  ``(seed, layer name)``, so every layer's start depends on neither the global RNG nor the order of the layers.
- **Prior** (Sec. 3.3, ``init_diff_mask_from_prior``): with a one-shot mask ``M0`` (magnitude, Wanda,
  SparseGPT), ``p_k += (S_k . M0 - 1) * std(p) * strength``: for 2:4 the prior pattern (overlap 2) gains
  ``strength`` standard deviations of the init noise, patterns sharing one kept weight stay, the disjoint one
  loses as much. At ``kappa_0 = 100`` and ``std = 0.01`` that is a lead of ``strength`` in scaled logits,
  against noise of standard deviation 1, so a few groups start off their prior (about 7% at strength 3).
- **Sparse weight regularisation** (Sec. 3.4, ``loss_func``): ``-lambda_t * sum ||W (.) M~||^2`` over the
  masked layers, unnormalised (``W`` frozen, so only ``M~`` gets the gradient), with
  ``lambda_t = lambda * (1 - step / steps)`` removed linearly over training (``reg_weight``); lambda = 1e-5.
- **Export**: the argmax pattern per group (``hard_mask``), multiplied into the weight by ``export_``.

Randomness: the Gumbel noise comes from a ``torch.Generator`` seeded with ``cfg.seed``, the init noise from
one keyed generator per layer; never the global RNG.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from masklab.corrupt import keyed

from .nm import _check_nm, nm_patterns

__all__ = [
    "MaskLLMConfig",
    "LearnableNMMask",
    "attach",
    "export_",
    "init_generator",
    "reg_weight",
    "sparse_weight_reg",
    "train_masks",
]


@dataclass
class MaskLLMConfig:
    """Hyperparameters of MaskLLM training (defaults follow the paper unless noted)."""

    n: int = 2  # keep n ...
    m: int = 4  # ... of every m consecutive input weights
    steps: int = 200  # optimiser steps (the paper trains 2,000+ on an LLM; small models need fewer)
    lr: float = 1e-3  # AdamW lr on the logits; each step moves kappa * lr in scaled logits (5e-2 wrecked MiniLM)
    tau: tuple[float, float] = (4.0, 0.05)  # Gumbel-softmax temperature, start -> end (linear)
    kappa: tuple[float, float] = (1e2, 5e2)  # logit scale, start -> end (linear)
    prior_strength: float = 3.0  # reference --prior-strength: init-noise std devs the prior pattern gains; 0 = none
    init_std: float = 0.01  # std of the N(0, std) logit init (reference DifferentiableMask)
    reg: float = 1e-5  # lambda of -lambda_t * sum ||W (.) M~||^2, unnormalised, decayed to 0 (reference --weight-reg)
    seed: int = 0  # seed of the Gumbel noise and of the keyed logit init

    def __post_init__(self):
        _check_nm(self.n, self.m)
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got steps={self.steps}, lr={self.lr}")
        if min(self.tau) <= 0 or min(self.kappa) <= 0:
            raise ValueError(f"tau and kappa must be positive, got tau={self.tau}, kappa={self.kappa}")
        if self.prior_strength < 0 or self.init_std < 0 or self.reg < 0:
            raise ValueError(
                f"prior_strength, init_std and reg must be >= 0, got {self.prior_strength}, {self.init_std}, {self.reg}"
            )


class LearnableNMMask(nn.Module):
    """Parametrization ``W -> W * mask`` with per-group logits over the N:M candidate patterns.

    In training mode the mask is a fresh Gumbel-softmax sample on every forward; in eval mode it is the argmax
    pattern (hard, exactly N:M). ``tau`` and ``kappa`` are plain attributes set by the schedule. The logits start
    at ``N(0, init_std)`` drawn from ``init_generator`` (default: a generator seeded 0, never the global RNG), plus
    the prior's shift when ``prior`` is given (module docstring).
    """

    def __init__(
        self,
        shape: torch.Size | tuple[int, ...],
        n: int = 2,
        m: int = 4,
        prior: torch.Tensor | None = None,
        prior_strength: float = 3.0,
        kappa: float = 1e2,
        tau: float = 4.0,
        generator: torch.Generator | None = None,
        device=None,
        init_std: float = 0.01,
        init_generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_nm(n, m)
        self.shape = tuple(shape)
        rows = self.shape[0]
        cols = int(torch.tensor(self.shape[1:]).prod()) if len(self.shape) > 1 else 0
        if len(self.shape) < 2 or cols % m:
            raise ValueError(f"weight shape {self.shape} has an input dimension not divisible by m={m}")
        self.n, self.m, self.groups = n, m, cols // m
        self.register_buffer("patterns", nm_patterns(n, m, device=device), persistent=False)  # (K, m)
        gen = init_generator if init_generator is not None else torch.Generator().manual_seed(0)
        logits = torch.randn(rows, self.groups, self.patterns.shape[0], generator=gen) * init_std  # (R, G, K)
        logits = logits.to(device)
        if prior is not None and prior_strength > 0:
            if prior.shape != self.shape:
                raise ValueError(f"prior shape {tuple(prior.shape)} does not match weight shape {self.shape}")
            logits += prior_shift(prior.reshape(rows, self.groups, m), self.patterns, logits.std(), prior_strength)
        self.logits = nn.Parameter(logits)
        self.tau, self.kappa = float(tau), float(kappa)
        self.generator = generator

    def soft_mask(self) -> torch.Tensor:
        """One Gumbel-softmax sample of the soft mask, weight-shaped float."""
        z = self.kappa * self.logits
        u = torch.rand(z.shape, generator=self.generator, device=z.device, dtype=z.dtype)
        g = -torch.log(-torch.log(u.clamp_(1e-10, 1.0 - 1e-7)))  # Gumbel(0, 1)
        y = torch.softmax((z + g) / self.tau, dim=-1)  # (R, G, K)
        return (y @ self.patterns).reshape(self.shape)

    def hard_mask(self) -> torch.Tensor:
        """The argmax pattern of every group, a bool keep-mask of the weight's shape (exactly N:M)."""
        return self.patterns[self.logits.detach().argmax(-1)].reshape(self.shape).bool()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mask = self.soft_mask() if self.training else self.hard_mask()
        return weight * mask.to(weight.dtype)


def prior_shift(prior: torch.Tensor, patterns: torch.Tensor, std: torch.Tensor, strength: float) -> torch.Tensor:
    """``(S_k . M0 - 1) * std * strength``: the logit shift of every candidate pattern (reference
    ``init_diff_mask_from_prior``). ``prior`` (R, G, m) keep-mask, ``patterns`` (K, m) -> (R, G, K)."""
    overlap = prior.float().to(patterns.device) @ patterns.T  # (R, G, K): kept weights shared with the prior
    return (overlap - 1.0) * std * strength


def init_generator(seed: int, name: str) -> torch.Generator:
    """The generator of one layer's logit init, keyed on ``(seed, layer name)`` through ``keyed.derive``."""
    key = keyed.derive(torch.tensor([int(seed) & 0xFFFFFFFF]), zlib.crc32(name.encode()))
    return torch.Generator().manual_seed(int(key[0]))


def attach(
    modules: Mapping[str, nn.Module],
    cfg: MaskLLMConfig,
    priors: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, LearnableNMMask]:
    """Register a ``LearnableNMMask`` on the ``weight`` of every module and freeze the weight."""
    gen = generator
    masks = {}
    for name, mod in modules.items():
        w = mod.weight
        if gen is None:
            gen = torch.Generator(device=w.device).manual_seed(cfg.seed)
        w.requires_grad_(False)
        prior = None if priors is None else priors.get(name)
        mk = LearnableNMMask(
            w.shape, cfg.n, cfg.m, prior, cfg.prior_strength, cfg.kappa[0], cfg.tau[0], gen, device=w.device,
            init_std=cfg.init_std, init_generator=init_generator(cfg.seed, name),
        )  # fmt: skip
        parametrize.register_parametrization(mod, "weight", mk, unsafe=True)
        masks[name] = mk
    return masks


def _lerp(ab: tuple[float, float], t: float) -> float:
    return ab[0] + (ab[1] - ab[0]) * t


def set_schedule(masks: Mapping[str, LearnableNMMask], step: int, cfg: MaskLLMConfig) -> tuple[float, float]:
    """Set tau and kappa of every mask for ``step`` of ``cfg.steps`` (linear schedules); returns them."""
    t = min(step / max(cfg.steps - 1, 1), 1.0)
    tau, kappa = _lerp(cfg.tau, t), _lerp(cfg.kappa, t)
    for mk in masks.values():
        mk.tau, mk.kappa = tau, kappa
    return tau, kappa


def sparse_weight_reg(modules: Mapping[str, nn.Module]) -> torch.Tensor:
    """``-sum ||W.detach() (.) M~||^2`` over the masked modules, unnormalised (reference ``sparse_weight_norm``,
    subtracted in ``loss_func``); multiply by ``reg_weight``. Call it inside ``parametrize.cached()`` so that it
    sees the forward's mask sample."""
    total = 0.0
    for mod in modules.values():
        total = total + mod.weight.pow(2).sum()  # the parametrized weight is W * M~, W frozen: grad reaches M~ only
    return -total


def reg_weight(step: int, cfg: MaskLLMConfig) -> float:
    """``lambda * (1 - step / steps)``: the regulariser is removed linearly over training (reference
    ``pretrain_maskllm.py``, ``weight_loss_reg``)."""
    return cfg.reg * (1.0 - step / cfg.steps)


@torch.no_grad()
def export_(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Remove the parametrizations, write ``W * argmax mask`` into each weight; return the bool masks."""
    out = {}
    for name, mod in modules.items():
        mk = mod.parametrizations.weight[0]
        mask = mk.hard_mask()
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        mod.weight.mul_(mask.to(mod.weight.dtype))
        out[name] = mask
    return out


def train_masks(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    cfg: MaskLLMConfig,
    priors: Mapping[str, torch.Tensor] | None = None,
    log: Callable[[int, float], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Learn N:M masks for ``modules`` of ``model`` and export them in place; returns the bool masks.

    ``loss_fn(model, batch)`` is the task or distillation loss; ``batches`` is cycled for ``cfg.steps`` steps.
    Every parameter of the model is frozen during training and restored to its ``requires_grad`` afterwards.
    The model runs in eval mode (no dropout) while the masks sample Gumbel-softmax masks.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("MaskLLM training needs at least one batch")
    req = {p: p.requires_grad for p in model.parameters()}
    for p in req:
        p.requires_grad_(False)
    masks = attach(modules, cfg, priors)
    opt = torch.optim.AdamW([mk.logits for mk in masks.values()], lr=cfg.lr, weight_decay=0.0)
    was_training = model.training
    model.eval()  # no dropout: the weights are frozen, only the masks sample (training mode)
    for mk in masks.values():
        mk.train()
    try:
        for step in range(cfg.steps):
            set_schedule(masks, step, cfg)
            with parametrize.cached():  # one mask sample per step, shared by the loss and the regulariser
                loss = loss_fn(model, batches[step % len(batches)])
                total = loss + reg_weight(step, cfg) * sparse_weight_reg(modules) if cfg.reg else loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if log is not None:
                log(step, float(loss.detach()))
    finally:
        model.train(was_training)
        out = export_(modules)
        for p, r in req.items():
            p.requires_grad_(r)
    return out


def output_tensor(out) -> torch.Tensor:
    """The main tensor of an output: ``.logits``, else ``.last_hidden_state``, else the tensor or ``[0]``."""
    for attr in ("logits", "last_hidden_state"):
        v = getattr(out, attr, None)
        if v is not None:
            return v
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    raise ValueError(f"cannot find an output tensor in a {type(out).__name__}")


def distill_loss_fn(teacher: nn.Module) -> Callable[[nn.Module, object], torch.Tensor]:
    """A ``loss_fn`` that matches the student's main output to a frozen ``teacher``'s: KL for ``.logits``,
    otherwise MSE divided by the teacher output's variance. Positions the batch's ``attention_mask`` marks as
    padding are left out."""
    from .scores import _real_rows, run_model, token_mask

    teacher = copy.deepcopy(teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model, batch):
        with torch.no_grad():
            t_out = run_model(teacher, batch)
        s_out = run_model(model, batch)
        keep = token_mask(batch)
        if getattr(t_out, "logits", None) is not None:
            t, s = _real_rows(t_out.logits.float(), keep), _real_rows(s_out.logits.float(), keep)
            return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        t, s = output_tensor(t_out).float(), output_tensor(s_out).float()
        if t.dim() >= 3:
            t, s = _real_rows(t, keep), _real_rows(s, keep)
        return F.mse_loss(s, t) / t.var().clamp_min(1e-12)

    return loss_fn
