"""MoE causal LM: the ``ar`` recipe with every Llama MLP replaced by a sparse Mixture-of-Experts layer. Launch:
``masklab train --recipe moe-tiny`` (compare with ``masklab train --recipe ar``: the same data, schedule and
attention; with ``top_k=1`` and experts as wide as the dense MLP, a token runs through the same number of
parameters, Switch Transformer's equal-FLOPs comparison, Fedus et al. 2022 Sec. 2).

The loss is next-token cross-entropy plus, summed over layers, ``balance_coef`` x Switch's load-balancing loss
(Eq. 4) and ``z_coef`` x ST-MoE's router z-loss (Eq. 5); ``bits`` is the cross-entropy alone, the number to
compare with ``ar``. Routers, capacity and losses: :mod:`masklab.attention.moe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masklab.attention.moe import ROUTER
from masklab.models.moe_llama import build_moe_llama, moe_layers
from masklab.objectives.ar import AR
from masklab.train.recipes.ar import ARRecipe
from masklab.train.recipes.base import register, seeded

__all__ = ["MoECausalLM", "MoERecipe", "expert_loads", "run_expert_loads"]


class MoECausalLM(AR):
    """Next-token prediction for an MoE model, with the routers' auxiliary losses."""

    name = "moe-ar"

    def __init__(self, model, info, balance_coef: float = 0.01, z_coef: float = 0.001):
        super().__init__(model, info)
        self.balance_coef, self.z_coef = balance_coef, z_coef

    def forward(self, batch, keys, **ctx):
        ce, metrics = super().forward(batch, keys, **ctx)  # the forward fills each layer's aux and stats
        layers = moe_layers(self.model)
        balance = torch.stack([m.aux["balance"] for m in layers]).sum()  # one loss per router (Switch Sec. 2.2)
        z = torch.stack([m.aux["z"] for m in layers]).sum()
        dropped = torch.stack([m.stats["dropped"] for m in layers]).mean()
        loss = ce + self.balance_coef * balance + self.z_coef * z
        return loss, {**metrics, "balance": balance.detach() / len(layers), "z": z.detach() / len(layers),
                      "dropped": dropped}  # fmt: skip

    def flop_groups(self):
        """Every matmul parameter once per token, but the experts: a token runs through ``active_share`` of them
        (k / E; capacity drops make the measured count a little lower)."""
        from masklab.compare.flops import matmul_params

        layers = moe_layers(self.model)
        expert_ids = {id(p) for m in layers for p in m.expert_parameters()}
        dense = [p for p in matmul_params(self) if id(p) not in expert_ids]
        return [(dense, 1.0)] + [(m.expert_parameters(), m.active_share()) for m in layers]


@dataclass
class MoERecipe(ARRecipe):
    """The ``ar`` recipe (so ``masklab compare`` probes it as a generative causal run) with MoE MLPs."""

    experts: int = 4  # E experts per layer
    top_k: int = 1  # k experts per token (Switch: 1)
    routing: str = "top-k"  # a router (masklab list router): top-k (token choice) or expert-choice
    capacity_factor: float = 1.25  # Switch's training value (Eq. 3); 0: no capacity, nothing dropped (top-k only)
    expert_intermediate: int = 0  # each expert's MLP width; 0: the preset's width / top_k (equal active parameters)
    balance_coef: float = 0.01  # Switch's alpha
    z_coef: float = 0.001  # ST-MoE's c_z

    def __post_init__(self):
        super().__post_init__()  # arch=llama
        if self.init or self.lora:
            raise ValueError("moe recipes train from scratch: init and lora are not supported")
        if self.routing not in ROUTER:
            raise ValueError(f"routing must be one of {', '.join(ROUTER)}, got {self.routing!r}")
        if self.experts < 1 or not 1 <= self.top_k <= self.experts:
            raise ValueError(f"need experts >= 1 and top_k in [1, experts], got experts={self.experts}, "
                             f"top_k={self.top_k}")  # fmt: skip
        if self.capacity_factor < 0 or (self.routing == "expert-choice" and self.capacity_factor == 0):
            raise ValueError(f"capacity_factor must be >= 0 (> 0 for expert-choice), got {self.capacity_factor}")
        if self.expert_intermediate < 0 or self.balance_coef < 0 or self.z_coef < 0:
            raise ValueError("expert_intermediate, balance_coef and z_coef must be >= 0")

    def make_model(self, pre, info, facts: dict) -> torch.nn.Module:
        with seeded(self.seed):
            return build_moe_llama(
                self.preset,
                info,
                self.seq_len,
                experts=self.experts,
                k=self.top_k,
                routing=self.routing,
                capacity_factor=self.capacity_factor,
                expert_intermediate=self.expert_intermediate,
            )

    def build_objective(self, model, info):
        return MoECausalLM(model, info, self.balance_coef, self.z_coef)


@register("moe-tiny", "MoE causal LM: the ar model with 4 top-1 experts per MLP (Switch), equal active parameters")
def moe_tiny():
    return MoERecipe(preset="tiny", tokenizer="bytes", seq_len=128, batch_size=32, steps=300, lr=3e-3, warmup=20)


@torch.no_grad()
def expert_loads(model, examples: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens per expert ``(layers, E)`` and the dropped share per layer ``(layers,)`` of ``model`` over
    ``examples`` ``[N, L]`` in batches of ``batch_size`` (capacity is shared within a batch, as in training)."""
    layers = moe_layers(model)
    if not layers:
        raise ValueError("model has no MoE layers")
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    load = torch.zeros(len(layers), len(layers[0].experts))
    dropped = torch.zeros(len(layers))
    n = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size].to(device)
        model(input_ids=batch)
        load += torch.stack([m.stats["load"].float().cpu() for m in layers])
        dropped += torch.stack([m.stats["dropped"].cpu() for m in layers]) * batch.numel()
        n += batch.numel()
    model.train(was)
    return load, dropped / max(n, 1)


def run_expert_loads(path, batches: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`expert_loads` of the MoE run (or checkpoint) at ``path`` on the first ``batches`` training-size
    batches of its recipe's held-out windows (capacity then covers as many tokens as in training), tokenised with
    the tokenizer saved with it."""
    from masklab.train import checkpoint
    from masklab.train.recipes.base import apply_overrides, from_dict

    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches!r}")
    found = checkpoint.load(path, model=False)  # verified against its manifest
    recipe = from_dict(found.manifest["recipe"])
    if not isinstance(recipe, MoERecipe):
        raise ValueError(f"{path} is a run of recipe {recipe.name!r}, not of an MoE recipe (masklab recipes)")
    if (found.folder / "tokenizer.json").exists():
        recipe = apply_overrides(recipe, [f"tokenizer={found.folder}"])
    task = recipe.build()
    task.objective.load_model(found.folder)
    size = max(1, recipe.batch_size // recipe.grad_accum)  # one micro-batch of one rank
    return expert_loads(task.objective.model, task.valid[: size * batches], batch_size=size)
