"""A Llama causal LM whose MLPs are sparse Mixture-of-Experts layers (:class:`masklab.attention.moe.MoE`).

Every decoder layer keeps Llama's attention and norms; its MLP becomes ``num_experts`` Llama MLPs of width
``expert_intermediate_size`` behind a router (``routing``: a :data:`~masklab.attention.moe.ROUTER` name, with
``num_experts_per_tok`` = k and ``capacity_factor``). This is Mixtral's layout (Jiang et al. 2024) with masklab's
routers, capacity and drop masks. Hugging Face's Mixtral block has no capacity or expert choice, hence this small
subclass. ``save_pretrained`` / ``from_pretrained`` round-trip it, and importing this module registers it with the
``Auto`` classes.
"""

from __future__ import annotations

import copy

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaMLP

from masklab.attention.moe import MoE
from masklab.models.build import PRESETS, check_seq_len

__all__ = ["MoELlamaConfig", "MoELlamaForCausalLM", "moe_layers", "build_moe_llama"]


class MoELlamaConfig(LlamaConfig):
    model_type = "masklab_moe_llama"

    def __init__(
        self,
        num_experts: int = 4,
        num_experts_per_tok: int = 1,
        routing: str = "top-k",
        capacity_factor: float = 1.25,
        expert_intermediate_size: int | None = None,
        **kwargs,
    ):
        self.num_experts = num_experts  # E
        self.num_experts_per_tok = num_experts_per_tok  # k
        self.routing = routing  # a ROUTER name: top-k (token choice) or expert-choice
        self.capacity_factor = capacity_factor  # Switch Eq. 3; 0: no capacity (token choice only)
        self.expert_intermediate_size = expert_intermediate_size  # None: intermediate_size
        super().__init__(**kwargs)


class MoELlamaForCausalLM(LlamaForCausalLM):
    config_class = MoELlamaConfig
    config: MoELlamaConfig

    def __init__(self, config: MoELlamaConfig):
        super().__init__(config)
        expert_config = copy.copy(config)
        expert_config.intermediate_size = config.expert_intermediate_size or config.intermediate_size
        for layer in self.model.layers:
            layer.mlp = MoE(
                config.hidden_size,
                [LlamaMLP(expert_config) for _ in range(config.num_experts)],
                k=config.num_experts_per_tok,
                routing=config.routing,
                capacity_factor=config.capacity_factor,
            )
        self.post_init()  # initialises the new router and experts only (the rest is marked initialised)


def moe_layers(model) -> list[MoE]:
    """The MoE layers of ``model`` in order (empty for a dense model)."""
    return [m for m in model.modules() if isinstance(m, MoE)]


AutoConfig.register(MoELlamaConfig.model_type, MoELlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(MoELlamaConfig, MoELlamaForCausalLM, exist_ok=True)
AutoModel.register(MoELlamaConfig, MoELlamaForCausalLM, exist_ok=True)  # what masklab's checkpoint loader falls to


def build_moe_llama(
    preset: str,
    info,
    max_len: int,
    *,
    experts: int,
    k: int,
    routing: str,
    capacity_factor: float,
    expert_intermediate: int = 0,
) -> MoELlamaForCausalLM:
    """A fresh MoE Llama of size ``preset`` (the dense :func:`~masklab.models.build.build_model` llama with each MLP
    replaced by ``experts`` experts of width ``expert_intermediate``; 0: the preset's MLP width / k, so a token
    runs through as many expert parameters as the dense model's MLP has)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    check_seq_len(max_len)
    p = PRESETS[preset]
    config = MoELlamaConfig(
        num_experts=experts,
        num_experts_per_tok=k,
        routing=routing,
        capacity_factor=capacity_factor,
        expert_intermediate_size=expert_intermediate or max(1, p.intermediate // k),
        vocab_size=info.vocab_size,
        hidden_size=p.hidden,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.heads,
        intermediate_size=p.intermediate,
        max_position_embeddings=max_len,
        pad_token_id=info.pad_id,
        eos_token_id=info.eos_id,
        bos_token_id=info.bos_id,
        tie_word_embeddings=True,
    )
    return MoELlamaForCausalLM._from_config(config, attn_implementation="sdpa")
