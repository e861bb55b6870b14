"""Models built from transformers config classes, with named size presets, and masklab's masked ViT (MAE / HPM),
a Hugging Face model registered with ``AutoConfig`` / ``AutoModel`` on import."""

from masklab.models.build import ARCHS, MAX_POSITIONS, PRESETS, Preset, build_model, check_seq_len, count_parameters
from masklab.models.vit_mae import MaskedViT, MaskedViTConfig, MaskedViTModel

__all__ = [
    "ARCHS",
    "MAX_POSITIONS",
    "PRESETS",
    "Preset",
    "build_model",
    "check_seq_len",
    "count_parameters",
    "MaskedViT",
    "MaskedViTConfig",
    "MaskedViTModel",
]
