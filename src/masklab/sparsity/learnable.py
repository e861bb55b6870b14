"""Learnable N:M masks (MaskLLM: Fang et al., 2024, "MaskLLM: Learnable Semi-Structured Sparsity for Large
Language Models", NeurIPS).

Each group of ``m`` consecutive input weights picks one of the ``K = C(m, n)`` candidate patterns
``S in {0,1}^{K x m}`` (``nm_patterns``). The choice is a categorical distribution with learnable logits ``p``
per group. Training samples a differentiable mask with Gumbel-softmax (paper Eq. 4-5):

    y = softmax((kappa * p + g) / tau),   g ~ Gumbel(0, 1)       # (rows, groups, K)
    M~ = y @ S                                                     # (rows, groups, m) soft mask

with the temperature ``tau`` annealed (4 -> 0.05 in the paper) and the logit scale ``kappa`` grown
(1e2 -> 5e2) linearly over training. The weights are frozen; only the logits learn.

- **Prior** (Sec. 3.3): logits start from a one-shot mask ``M0`` (magnitude, Wanda, SparseGPT):
  ``p_k = strength / kappa_0 * (S_k . M0 - mean_k S_k . M0)``, so at step 0 the prior pattern leads by
  ``strength`` scaled logits (``strength = 0``: uniform start).
- **Sparse weight regularisation** (Sec. 3.4): ``-lambda * sum ||W (.) M~||^2`` keeps large weights alive;
  here divided by ``sum ||W||^2`` so ``lambda`` does not depend on the model's scale.
- **Export**: the argmax pattern per group (``hard_mask``), multiplied into the weight by ``export_``.

Randomness: the Gumbel noise comes from a ``torch.Generator`` (``seed`` int or a Generator; never global RNG).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .nm import _check_nm, nm_patterns

__all__ = ["MaskLLMConfig", "LearnableNMMask", "attach", "export_", "sparse_weight_reg", "train_masks"]


@dataclass
class MaskLLMConfig:
    """Hyperparameters of MaskLLM training (defaults follow the paper unless noted)."""

    n: int = 2  # keep n ...
    m: int = 4  # ... of every m consecutive input weights
    steps: int = 200  # optimiser steps (the paper trains 2,000+ on an LLM; small models need fewer)
    lr: float = 1e-3  # AdamW lr on the logits; each step moves kappa * lr in scaled logits (5e-2 wrecked MiniLM)
    tau: tuple[float, float] = (4.0, 0.05)  # Gumbel-softmax temperature, start -> end (linear)
    kappa: tuple[float, float] = (1e2, 5e2)  # logit scale, start -> end (linear)
    prior_strength: float = 3.0  # lead of the prior pattern in scaled logits at step 0; 0 = no prior
    reg: float = 1e-5  # lambda of the sparse weight regulariser (normalised, see module docstring)
    seed: int = 0  # Gumbel noise generator seed

    def __post_init__(self):
        _check_nm(self.n, self.m)
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got steps={self.steps}, lr={self.lr}")
        if min(self.tau) <= 0 or min(self.kappa) <= 0:
            raise ValueError(f"tau and kappa must be positive, got tau={self.tau}, kappa={self.kappa}")
        if self.prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {self.prior_strength}")


class LearnableNMMask(nn.Module):
    """Parametrization ``W -> W * mask`` with per-group logits over the N:M candidate patterns.

    In training mode the mask is a fresh Gumbel-softmax sample on every forward; in eval mode it is the argmax
    pattern (hard, exactly N:M). ``tau`` and ``kappa`` are plain attributes set by the schedule.
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
        logits = torch.zeros(rows, self.groups, self.patterns.shape[0], device=device)  # (R, G, K)
        if prior is not None and prior_strength > 0:
            if prior.shape != self.shape:
                raise ValueError(f"prior shape {tuple(prior.shape)} does not match weight shape {self.shape}")
            sim = prior.reshape(rows, self.groups, m).float().to(logits.device) @ self.patterns.T  # (R, G, K)
            logits += prior_strength / kappa * (sim - sim.mean(-1, keepdim=True))
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
            w.shape, cfg.n, cfg.m, prior, cfg.prior_strength, cfg.kappa[0], cfg.tau[0], gen, device=w.device
        )
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
    """``-sum ||W (.) M~||^2 / sum ||W||^2`` over the masked modules (multiply by lambda)."""
    num, den = 0.0, 0.0
    for mod in modules.values():
        num = num + mod.weight.pow(2).sum()  # the parametrized weight is W * M~
        den = den + mod.parametrizations.weight.original.detach().pow(2).sum()
    return -num / den


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
                total = loss + cfg.reg * sparse_weight_reg(modules) if cfg.reg else loss
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
