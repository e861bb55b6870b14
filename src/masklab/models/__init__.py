"""Models built from transformers config classes, with named size presets."""

from masklab.models.build import ARCHS, MAX_POSITIONS, PRESETS, Preset, build_model, check_seq_len, count_parameters

__all__ = ["ARCHS", "MAX_POSITIONS", "PRESETS", "Preset", "build_model", "check_seq_len", "count_parameters"]
