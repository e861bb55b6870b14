"""Models built from transformers config classes, with named size presets."""

from masklab.models.build import ARCHS, PRESETS, Preset, build_model, count_parameters

__all__ = ["ARCHS", "PRESETS", "Preset", "build_model", "count_parameters"]
