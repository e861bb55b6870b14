"""Regularized Mask Tuning (R-AMT: Zheng, Wu, Feng, et al., 2023, "Regularized Mask Tuning: Uncovering Hidden
Knowledge in Pre-trained Vision-Language Models", ICCV).

The pretrained weights stay frozen; each chosen weight gets a binary mask ``M_bin = 1[M > alpha]`` over a
real-valued score ``M`` (initialised above ``alpha``, so training starts from the unmasked model). The
binarisation has no gradient, so ``M`` is updated with ``dL/dM_bin`` (straight-through estimator,
paper Sec. 3.1).

**Gradient dropout regularity** (paper Sec. 3.3): the task gradient ``g = dL_task/dM`` is dropped
element-wise where it disagrees with the gradient ``r = dL_reg/dM`` of a regulariser that keeps the model near
its pretrained predictions (the KL divergence to the unmasked model's outputs). With the agreement probability

    P = 1/2 * (1 + sign(g) * (g + r) / (|g| + |r|))   # 1 when g, r agree in sign; -> 0 when r dominates
    g' = 1[U < P] * g,   U ~ Uniform(0, 1)

a mask flip that the regulariser opposes is made only with probability ``P``, which slows forgetting and
over-fitting on few-shot data. Randomness: a ``torch.Generator`` seeded from ``cfg.seed``, never global RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["MaskTuningConfig", "BinaryMask", "grad_dropout", "attach", "export_", "train"]


@dataclass
class MaskTuningConfig:
    """Hyperparameters of regularized mask tuning."""

    steps: int = 100  # optimiser steps
    lr: float = 1e-2  # Adam learning rate on the real-valued mask scores
    threshold: float = 0.5  # alpha: a weight lives while its score exceeds it
    init: float = 1.0  # initial score (> threshold: start from the unmasked model)
    grad_dropout: bool = True  # False = plain mask tuning on the task loss
    seed: int = 0  # generator seed for the dropout draws

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got steps={self.steps}, lr={self.lr}")
        if self.init <= self.threshold:
            raise ValueError(f"init ({self.init}) must exceed threshold ({self.threshold}) to start unmasked")


class _BinarizeSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, threshold):
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # straight-through: dL/dM := dL/dM_bin


class BinaryMask(nn.Module):
    """Parametrization ``W -> W * 1[M > alpha]`` with straight-through gradients to the scores ``M``."""

    def __init__(self, shape, threshold: float = 0.5, init: float = 1.0, device=None):
        super().__init__()
        self.threshold = float(threshold)
        self.scores = nn.Parameter(torch.full(tuple(shape), float(init), device=device))

    def mask(self) -> torch.Tensor:
        """The current bool keep-mask."""
        return self.scores.detach() > self.threshold

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * _BinarizeSTE.apply(self.scores, self.threshold).to(weight.dtype)


def grad_dropout(g_task: torch.Tensor, g_reg: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """R-AMT gradient dropout: keep each element of ``g_task`` with probability ``P`` (module docstring)."""
    if g_task.shape != g_reg.shape:
        raise ValueError(f"gradient shapes differ: {tuple(g_task.shape)} vs {tuple(g_reg.shape)}")
    denom = g_task.abs() + g_reg.abs()
    agree = torch.sign(g_task) * (g_task + g_reg) / denom.clamp_min(torch.finfo(denom.dtype).tiny)
    p = torch.where(denom > 0, 0.5 * (1.0 + agree), torch.ones_like(denom))
    u = torch.rand(g_task.shape, generator=generator, device=g_task.device, dtype=p.dtype)
    return torch.where(u < p, g_task, torch.zeros_like(g_task))


def attach(modules: Mapping[str, nn.Module], cfg: MaskTuningConfig) -> dict[str, BinaryMask]:
    """Register a ``BinaryMask`` on the ``weight`` of each module and freeze the weight."""
    out = {}
    for name, mod in modules.items():
        mod.weight.requires_grad_(False)
        bm = BinaryMask(mod.weight.shape, cfg.threshold, cfg.init, device=mod.weight.device)
        parametrize.register_parametrization(mod, "weight", bm, unsafe=True)
        out[name] = bm
    return out


@torch.no_grad()
def export_(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Remove the masks, write ``W * M_bin`` into each weight; return the bool keep-masks."""
    out = {}
    for name, mod in modules.items():
        mask = mod.parametrizations.weight[0].mask()
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        mod.weight.mul_(mask.to(mod.weight.dtype))
        out[name] = mask
    return out


def train(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    task_loss: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    cfg: MaskTuningConfig,
    reg_loss: Callable[[nn.Module, object], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Tune binary masks on the frozen weights of ``modules``; export them in place and return them.

    ``reg_loss(model, batch)`` defaults to the KL divergence (or normalised MSE) between the masked model's
    and the original model's outputs (``learnable.distill_loss_fn``); it acts only through
    ``grad_dropout``.
    """
    from .learnable import distill_loss_fn

    batches = list(batches)
    if not batches:
        raise ValueError("mask tuning needs at least one batch")
    if cfg.grad_dropout and reg_loss is None:
        reg_loss = distill_loss_fn(model)
    req = {p: p.requires_grad for p in model.parameters()}
    for p in req:
        p.requires_grad_(False)
    masks = attach(modules, cfg)
    scores = [bm.scores for bm in masks.values()]
    gen = torch.Generator(device=scores[0].device).manual_seed(cfg.seed)
    opt = torch.optim.Adam(scores, lr=cfg.lr)
    try:
        for step in range(cfg.steps):
            batch = batches[step % len(batches)]
            g_task = torch.autograd.grad(task_loss(model, batch), scores, allow_unused=True)
            g_task = [torch.zeros_like(s) if g is None else g for s, g in zip(scores, g_task, strict=True)]
            if cfg.grad_dropout:
                g_reg = torch.autograd.grad(reg_loss(model, batch), scores, allow_unused=True)
                g_task = [
                    grad_dropout(g, torch.zeros_like(g) if r is None else r, gen)
                    for g, r in zip(g_task, g_reg, strict=True)
                ]
            for s, g in zip(scores, g_task, strict=True):
                s.grad = g
            opt.step()
    finally:
        out = export_(modules)
        for p, r in req.items():
            p.requires_grad_(r)
    return out
