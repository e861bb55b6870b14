"""Build plain Hugging Face models from config classes. masklab adds no model code here.

``modernbert`` is a bidirectional encoder with an MLM head (masked objectives, masked diffusion); ``llama`` is a
causal LM (next-token objectives, MEAP, the reference LM for generative perplexity).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, ModernBertConfig, ModernBertForMaskedLM

from masklab.data.tokenizers import TokenInfo

__all__ = ["Preset", "PRESETS", "ARCHS", "MAX_POSITIONS", "build_model", "check_seq_len", "count_parameters"]


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    intermediate: int  # MLP width (ModernBERT's GLU doubles the input projection)


PRESETS = {
    "micro": Preset(hidden=32, layers=2, heads=2, intermediate=64),  # tests: trains 30 steps in seconds
    "mini": Preset(hidden=64, layers=4, heads=2, intermediate=128),  # comparisons of layer groups on the CPU
    "tiny": Preset(hidden=128, layers=8, heads=4, intermediate=256),  # demo: ~1.4M params, minutes on 2 CPU cores
    "small": Preset(hidden=256, layers=8, heads=4, intermediate=512),  # ~7M params with BPE-4096
    "base": Preset(hidden=768, layers=12, heads=12, intermediate=1152),  # ModernBERT-base width, GPU territory
}
ARCHS = ("modernbert", "llama")
# The longest sequence a built model accepts (its max_position_embeddings): ModernBERT's 8192. Longer windows make
# the [B, L, L] attention mask alone tens of GB, so they are refused before anything is allocated.
MAX_POSITIONS = 8192


def check_seq_len(seq_len, max_positions: int = MAX_POSITIONS) -> int:
    """``seq_len`` as an int in [2, max_positions], else one ValueError naming it."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int):
        raise ValueError(f"seq_len must be an int, got {seq_len!r}")
    if not 2 <= seq_len <= max_positions:
        raise ValueError(f"seq_len={seq_len} must be in [2, {max_positions}] (the model's max_position_embeddings)")
    return seq_len


def build_model(arch: str, preset: str, info: TokenInfo, max_len: int) -> nn.Module:
    """A freshly initialised HF model of ``arch`` and size ``preset`` for the tokenizer described by ``info``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    check_seq_len(max_len)
    p = PRESETS[preset]
    if arch == "modernbert":
        config = ModernBertConfig(
            vocab_size=info.vocab_size,
            hidden_size=p.hidden,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            intermediate_size=p.intermediate,
            max_position_embeddings=max_len,
            global_attn_every_n_layers=1,  # every layer global: sequences are short, no sliding window needed
            pad_token_id=info.pad_id,
            eos_token_id=info.eos_id,
            bos_token_id=info.bos_id,
            cls_token_id=info.bos_id,
            sep_token_id=info.eos_id,
            tie_word_embeddings=True,
        )
        return ModernBertForMaskedLM._from_config(config, attn_implementation="sdpa")
    if arch == "llama":
        config = LlamaConfig(
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
        return LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
