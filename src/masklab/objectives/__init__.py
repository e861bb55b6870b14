"""Pretraining objectives: one file each, a corruption + a target + a loss around a model.

:data:`OBJECTIVES` is the registry of kind "objective": each entry is an :class:`Objective` class, called as
``(model, *parts, **options) -> Objective`` (text objectives take the tokenizer's ``TokenInfo`` as their part).
"""

from masklab.objectives.base import Objective, logits_of
from masklab.registry import Registry

OBJECTIVES = Registry("objective", "training objectives: (model, *parts, **options) -> Objective")


def _register_all() -> None:
    from masklab.objectives.ar import AR
    from masklab.objectives.bd3 import BD3
    from masklab.objectives.electra import ELECTRA
    from masklab.objectives.finetune import Finetune
    from masklab.objectives.frames import FrameObjective
    from masklab.objectives.mae import MAEObjective
    from masklab.objectives.maskalign import MaskAlignObjective
    from masklab.objectives.masksearch import RAMPReader
    from masklab.objectives.mdm import MDM, MDMSFT
    from masklab.objectives.meap import MEAP
    from masklab.objectives.mlm import MLM, CorruptionMLM
    from masklab.objectives.ngram import ErnieGram

    for name, cls, summary in [
        ("mlm", MLM, "BERT masked LM: (model, info, prob, mix)"),
        ("ernie-gram", ErnieGram, "ERNIE-Gram: explicit n-gram MLM over V_F u V_N, comprehensive prediction"),
        ("mlm-corruption", CorruptionMLM, "masked LM over a word-level corruption (whole-word, span, n-gram)"),
        ("mdm", MDM, "masked diffusion LM with the 1/t-weighted ELBO: (model, info, eps, t_sampling)"),
        ("mdm-sft", MDMSFT, "LLaDA SFT: masked diffusion on the response only, per response length: (model, info)"),
        ("meap", MEAP, "causal LM with mask tokens in the input (MEAP): (model, info, prob)"),
        ("electra", ELECTRA, "ELECTRA replaced-token detection, generator + discriminator"),
        ("ar", AR, "causal next-token LM: (model, info)"),
        ("bd3", BD3, "BD3-LM block diffusion: x_t (+) x_0 in one pass, 1/t NELBO per block: (model, info, block_size)"),
        ("mae", MAEObjective, "MAE / HPM masked image modelling over any patch strategy: (model, strategy, ratio)"),
        ("maskalign", MaskAlignObjective, "MaskAlign: visible-patch features aligned to a frozen teacher"),
        ("finetune", Finetune, "supervised fine-tuning: a class per text or per token, classification or MLM head"),
        ("ramp", RAMPReader, "MaskSearch RAMP reader: fill masked spans after a retrieved passage, exact match"),
        ("frames", FrameObjective, "masked frame prediction (L1 on masked frames): (model, mask_prob, mask_length)"),
    ]:
        OBJECTIVES.register(name, summary, cls)


_register_all()

__all__ = ["OBJECTIVES", "Objective", "logits_of"]
