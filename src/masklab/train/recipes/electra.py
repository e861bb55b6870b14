"""ELECTRA / DeBERTaV3 replaced-token detection recipe. Launch: ``masklab train --recipe electra
sharing=gdes`` (embedding sharing ``none``, ``es`` as in ELECTRA, or ``gdes`` as in DeBERTaV3, the
default)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from masklab.corrupt.replace import METHODS
from masklab.corrupt.tokens import check_prob
from masklab.objectives.electra import ELECTRA, SHARING
from masklab.train.recipes.base import SMALL_BPE, TextRecipe, register, seeded


@dataclass
class ElectraRecipe(TextRecipe):
    sharing: str = "gdes"  # none | es (ELECTRA) | gdes (DeBERTaV3): how generator and discriminator share E
    mask_prob: float = 0.15  # ELECTRA-small masks 15% (k per row, without replacement)
    gen_layers: float = 0.5  # generator depth as a fraction of the discriminator's (same width: shared E)
    rtd_weight: float = 50.0  # lambda in L_MLM + lambda L_Disc (ELECTRA)
    sampling: str = "multinomial"  # multinomial (keyed inverse CDF) | gumbel (keyed Gumbel-max)
    temperature: float = 1.0  # generator softmax temperature for sampling
    disallow_correct: bool = False  # never sample the original token
    generator_init: str | None = None  # a pretrained masked LM folder for the generator (default: init's model, cut)

    def __post_init__(self):
        super().__post_init__()
        check_prob("mask_prob", self.mask_prob)
        if self.sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {self.sharing!r}")
        if self.sampling not in METHODS:
            raise ValueError(f"sampling must be one of {METHODS}, got {self.sampling!r}")
        if not 0 < self.gen_layers <= 1:
            raise ValueError(f"gen_layers must be in (0, 1], got {self.gen_layers}")
        if self.temperature <= 0 or self.rtd_weight < 0:
            raise ValueError("temperature must be > 0 and rtd_weight >= 0")
        if self.arch != "modernbert":
            raise ValueError("ELECTRA needs bidirectional models: arch=modernbert")
        if self.lora:
            raise ValueError("lora: ELECTRA trains two networks (generator and discriminator) in full; use lora=0")
        if self.generator_init is not None and self.init is None:
            raise ValueError("generator_init needs init=PATH for the discriminator")

    def _discriminator(self, model):
        """The RTD head on the encoder: from ``init``'s weights when given, else freshly initialised."""
        from transformers import AutoModelForTokenClassification

        if self.init is not None:
            from transformers.utils import logging as hf_logging

            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the new 1-label head is expected
            try:
                return AutoModelForTokenClassification.from_pretrained(self.init, num_labels=1, local_files_only=True)
            finally:
                hf_logging.set_verbosity(verbosity)
        dcfg = copy.deepcopy(model.config)
        dcfg.num_labels = 1
        return AutoModelForTokenClassification.from_config(dcfg, attn_implementation="sdpa")

    def _generator(self, model):
        """``generator_init``'s masked LM, else ``model``'s architecture cut to ``gen_layers`` of its depth
        (ELECTRA's smaller generator), freshly initialised."""
        if self.generator_init is not None:
            from masklab.models.pretrained import load_pretrained

            return load_pretrained(self.generator_init, head="masked").model
        gcfg = copy.deepcopy(model.config)
        gcfg.num_hidden_layers = max(1, round(model.config.num_hidden_layers * self.gen_layers))
        if getattr(gcfg, "layer_types", None) is not None:  # per-layer attention kinds follow the depth
            gcfg.layer_types = list(gcfg.layer_types)[: gcfg.num_hidden_layers]
        return type(model)._from_config(gcfg, attn_implementation="sdpa")

    def build_objective(self, model, info):
        with seeded(self.seed + 1):
            disc = self._discriminator(model)
            gen = self._generator(model)
        return ELECTRA(
            disc,
            gen,
            info,
            sharing=self.sharing,
            prob=self.mask_prob,
            rtd_weight=self.rtd_weight,
            method=self.sampling,
            temperature=self.temperature,
            disallow_correct=self.disallow_correct,
        )


@register("electra", "ELECTRA RTD, generator + discriminator, DeBERTaV3 GDES sharing (sharing=none|es|gdes)")
def electra():
    return ElectraRecipe(sharing="gdes", **SMALL_BPE)
