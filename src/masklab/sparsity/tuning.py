"""Regularized Mask Tuning (R-AMT: Zheng, Wu, Feng, et al., 2023, "Regularized Mask Tuning: Uncovering Hidden
Knowledge in Pre-trained Vision-Language Models", ICCV). Reference: wuw2019/R-AMT, ``code/trainers/masktuning.py``
(``MaskTuning.forward_backward``, ``graddrop_backward_and_update``, ``KLLoss``), ``code/modules/masklayers.py``
(``Binarizer``), ``code/loss/reg_loss.py`` and the defaults of ``code/configs/trainers/MASK/vit_b16.yaml``.

1. **Pre-selection** ("we first identify a set of parameters that are important to a given downstream task"): the
   paper finds them by how much fine-tuning on the downstream data changes each layer's weights, the change ratio
   ``||W_ft - W|| / ||W||`` (``change_ratios``, ``preselect``). For CLIP that picks the multi-head self-attention
   weights, and the reference code has no selection step but fixes that choice (``MASK_MLP: False``).
2. **Binary masks** (``Binarizer``): each chosen weight gets a real score ``M`` (init ``1e-2``) and the mask
   ``M_bin = 1[M > threshold]`` (threshold ``5e-3``); ``W`` stays frozen and ``M`` learns through the
   straight-through estimator ``dL/dM := dL/dM_bin``.
3. **Task loss with an L2 term on the scores** (``reg_loss.RegLoss(param, 2)``, ``MASK.LOSS_WEIGHT = 1e-4``):
   ``L_a = L_task + reg * sum_layers ||M_l||_2`` (the norm, not its square).
4. **Gradient dropout regularity** (``graddrop_backward_and_update``; lambda is the paper's Eq. 7): ``L_b`` is
   the distillation loss to the unmasked model at temperature ``T``, the teacher fused with the student by
   ``alpha`` (``KLLoss``):

       t = alpha * z_teacher + (1 - alpha) * z_student
       L_b = T^2 * mean_rows sum_c -softmax(t / T)_c * log_softmax(z_student / T)_c

   With ``g = dL_a/dM`` and ``r = dL_b/dM``, each element of ``g`` is kept with the agreement probability
   ``P = 1/2 * (1 + sign(g) * (g + r) / (|g| + |r|))`` and otherwise scaled by ``1 - lambda`` (partial drop;
   ``lambda = 1`` drops it to 0):

       g' = ((1 - lambda) + lambda * 1[P > U]) * g,   U ~ Uniform(0, 1)

   A mask flip that the regulariser opposes is made only with probability ``P``, which slows forgetting and
   over-fitting on few-shot data. ``L_b`` acts only through ``P``; its own gradient is never applied.
5. Adam on the scores (no weight decay), learning rate annealed by a cosine to 0 (``OPTIM`` of the config).

Randomness: the dropout draws come from a ``torch.Generator`` seeded from ``cfg.seed``, never global RNG.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "MaskTuningConfig",
    "BinaryMask",
    "change_ratios",
    "preselect",
    "score_l2",
    "kl_loss",
    "kl_loss_fn",
    "grad_dropout",
    "attach",
    "export_",
    "train",
]


@dataclass
class MaskTuningConfig:
    """Hyperparameters of regularized mask tuning (defaults: the reference's ``vit_b16.yaml`` unless noted)."""

    steps: int = 100  # optimiser steps
    lr: float = 1e-3  # Adam, cosine to 0; reference 8e-5 over >= 1,500 steps: here 100 steps travel ~10x the gap
    threshold: float = 5e-3  # a weight lives while its score exceeds it (MASK.THRESHOLD)
    init: float = 1e-2  # initial score, above threshold: start from the unmasked model (MASK.SCALE, INIT '1s')
    reg: float = 1e-4  # weight of sum ||M||_2 in the task loss (MASK.LOSS_WEIGHT); 0 = off
    grad_dropout: bool = True  # False = plain mask tuning on the task loss (MASK.GDR)
    drop: float = 1.0  # lambda of Eq. 7: 1 drops to 0, < 1 keeps (1 - lambda) g; README: 0.3 on most 16-shot sets
    temperature: float = 1.0  # T of the distillation loss (MASK.GDR_T)
    fuse_alpha: float = 1.0  # teacher = alpha * teacher + (1 - alpha) * student logits (MASK.FUSE_ALPHA)
    seed: int = 0  # generator seed for the dropout draws

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"steps and lr must be positive, got steps={self.steps}, lr={self.lr}")
        if self.init <= self.threshold:
            raise ValueError(f"init ({self.init}) must exceed threshold ({self.threshold}) to start unmasked")
        if not (0.0 <= self.drop <= 1.0 and 0.0 <= self.fuse_alpha <= 1.0):
            raise ValueError(f"drop and fuse_alpha must be in [0, 1], got {self.drop}, {self.fuse_alpha}")
        if self.temperature <= 0 or self.reg < 0:
            raise ValueError(f"temperature must be > 0 and reg >= 0, got {self.temperature}, {self.reg}")


class _BinarizeSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, threshold):
        return (scores > threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # straight-through: dL/dM := dL/dM_bin


class BinaryMask(nn.Module):
    """Parametrization ``W -> W * 1[M > threshold]`` with straight-through gradients to the scores ``M``."""

    def __init__(self, shape, threshold: float = 5e-3, init: float = 1e-2, device=None):
        super().__init__()
        self.threshold = float(threshold)
        self.scores = nn.Parameter(torch.full(tuple(shape), float(init), device=device))

    def mask(self) -> torch.Tensor:
        """The current bool keep-mask."""
        return self.scores.detach() > self.threshold

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * _BinarizeSTE.apply(self.scores, self.threshold).to(weight.dtype)


def change_ratios(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    steps: int = 20,
    lr: float = 1e-2,
) -> dict[str, float]:
    """``||W_ft - W|| / ||W||`` of every module's weight after ``steps`` of SGD on ``loss_fn`` (module docstring).

    Only these weights train; every parameter is restored bit for bit afterwards, ``requires_grad`` included.
    Plain SGD, so a layer's change follows its gradient (Adam would move every weight by about ``lr`` per step
    and the ratio would measure only ``1 / rms(W)``).
    """
    batches = list(batches)
    if not batches or steps < 1:
        raise ValueError(f"change_ratios needs at least one batch and steps >= 1, got steps={steps}")
    weights = {name: mod.weight for name, mod in modules.items()}
    start = {name: w.detach().clone() for name, w in weights.items()}
    req = {p: p.requires_grad for p in model.parameters()}
    for p in req:
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    opt = torch.optim.SGD(list(weights.values()), lr=lr)
    try:
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model, batches[step % len(batches)]).backward()
            opt.step()
        return {
            name: float((w.detach() - start[name]).norm() / start[name].norm().clamp_min(1e-12))
            for name, w in weights.items()
        }
    finally:
        with torch.no_grad():
            for name, w in weights.items():
                w.copy_(start[name])
                w.grad = None
        for p, r in req.items():
            p.requires_grad_(r)


def preselect(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    top: int,
    steps: int = 20,
    lr: float = 1e-2,
) -> dict[str, nn.Module]:
    """The ``top`` modules with the largest change ratio (:func:`change_ratios`): where the masks go."""
    if not 0 < top <= len(modules):
        raise ValueError(f"top must be in [1, {len(modules)}] (the number of candidate modules), got {top}")
    ratios = change_ratios(model, modules, loss_fn, batches, steps, lr)
    chosen = sorted(ratios, key=lambda name: -ratios[name])[:top]
    return {name: modules[name] for name in modules if name in chosen}


def score_l2(masks: Mapping[str, BinaryMask]) -> torch.Tensor:
    """``sum_layers ||M_l||_2``: the L2 norm (not squared) of each layer's flattened scores (``RegLoss(p, 2)``)."""
    return sum(bm.scores.reshape(-1).norm(2) for bm in masks.values())


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, alpha: float = 1.0):
    """The reference ``KLLoss`` on logits ``[rows, classes]``: the fused teacher ``alpha * teacher + (1 - alpha) *
    student`` (not detached) as soft targets at temperature ``T``, times ``T^2``, summed over classes, averaged
    over rows."""
    fused = alpha * teacher + (1.0 - alpha) * student
    target = F.softmax(fused / temperature, dim=-1)
    return -(target * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean() * temperature**2


def kl_loss_fn(
    teacher: nn.Module, temperature: float = 1.0, alpha: float = 1.0
) -> Callable[[nn.Module, object], torch.Tensor]:
    """A ``loss_fn(model, batch)``: :func:`kl_loss` from a frozen copy of ``teacher`` to the model's main output
    (``.logits``, else the output tensor), over real positions when the batch has an ``attention_mask``."""
    from .learnable import output_tensor
    from .scores import _real_rows, run_model, token_mask

    teacher = copy.deepcopy(teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(model, batch):
        with torch.no_grad():
            t = output_tensor(run_model(teacher, batch)).float()
        s = output_tensor(run_model(model, batch)).float()
        keep = token_mask(batch)
        return kl_loss(_real_rows(s, keep), _real_rows(t, keep), temperature, alpha)

    return loss_fn


def grad_dropout(
    g_task: torch.Tensor, g_reg: torch.Tensor, generator: torch.Generator | None = None, drop: float = 1.0
) -> torch.Tensor:
    """R-AMT gradient dropout (Eq. 7, ``graddrop_backward_and_update``): keep each element of ``g_task`` with
    probability ``P``, otherwise scale it by ``1 - drop`` (module docstring)."""
    if g_task.shape != g_reg.shape:
        raise ValueError(f"gradient shapes differ: {tuple(g_task.shape)} vs {tuple(g_reg.shape)}")
    denom = g_task.abs() + g_reg.abs()
    agree = torch.sign(g_task) * (g_task + g_reg) / denom.clamp_min(torch.finfo(denom.dtype).tiny)
    p = torch.where(denom > 0, 0.5 * (1.0 + agree), torch.ones_like(denom))
    u = torch.rand(g_task.shape, generator=generator, device=g_task.device, dtype=p.dtype)
    return ((1.0 - drop) + drop * (p > u).to(g_task.dtype)) * g_task


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


def _grads(loss: torch.Tensor, scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """``d loss / d scores``, zeros for scores the loss does not reach."""
    grads = torch.autograd.grad(loss, scores, allow_unused=True)
    return [torch.zeros_like(s) if g is None else g for s, g in zip(scores, grads, strict=True)]


def train(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    task_loss: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    cfg: MaskTuningConfig,
    reg_loss: Callable[[nn.Module, object], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Tune binary masks on the frozen weights of ``modules``; export them in place and return them.

    ``modules`` are the pre-selected layers (:func:`preselect`, or a fixed choice such as the attention weights).
    ``reg_loss(model, batch)`` defaults to :func:`kl_loss_fn` of the unmasked model at ``cfg.temperature`` and
    ``cfg.fuse_alpha``; it acts only through :func:`grad_dropout`.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("mask tuning needs at least one batch")
    if cfg.grad_dropout and reg_loss is None:
        reg_loss = kl_loss_fn(model, cfg.temperature, cfg.fuse_alpha)  # a copy of the unmasked model
    req = {p: p.requires_grad for p in model.parameters()}
    for p in req:
        p.requires_grad_(False)
    masks = attach(modules, cfg)
    scores = [bm.scores for bm in masks.values()]
    gen = torch.Generator(device=scores[0].device).manual_seed(cfg.seed)
    opt = torch.optim.Adam(scores, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    try:
        for step in range(cfg.steps):
            batch = batches[step % len(batches)]
            loss_a = task_loss(model, batch) + (cfg.reg * score_l2(masks) if cfg.reg else 0.0)
            grads = _grads(loss_a, scores)
            if cfg.grad_dropout:
                g_reg = _grads(reg_loss(model, batch), scores)
                grads = [grad_dropout(g, r, gen, cfg.drop) for g, r in zip(grads, g_reg, strict=True)]
            for s, g in zip(scores, grads, strict=True):
                s.grad = g
            opt.step()
            sched.step()
    finally:
        out = export_(modules)
        for p, r in req.items():
            p.requires_grad_(r)
    return out
