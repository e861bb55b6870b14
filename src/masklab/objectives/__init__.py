"""Pretraining objectives: one file each, a corruption + a target + a loss around a model.

:data:`OBJECTIVES` is the registry of kind "objective": each entry is an :class:`Objective` class, called as
``(model, *parts, **options) -> Objective`` (text objectives take the tokenizer's ``TokenInfo`` as their part).
"""

from masklab.objectives.base import Objective, logits_of
from masklab.registry import Registry

OBJECTIVES = Registry("objective", "training objectives: (model, *parts, **options) -> Objective")


def _register_all() -> None:
    from masklab.objectives.adjust import AdjustObjective
    from masklab.objectives.ar import AR
    from masklab.objectives.bd3 import BD3
    from masklab.objectives.drbert import DrBERT
    from masklab.objectives.duin import DuINMaskedCodes, DuINVQVAE
    from masklab.objectives.electra import ELECTRA
    from masklab.objectives.finetune import Finetune
    from masklab.objectives.frames import FrameObjective
    from masklab.objectives.lamp import LaMPObjective
    from masklab.objectives.mae import MAEObjective
    from masklab.objectives.marten import MartenObjective
    from masklab.objectives.mask_adapter import MaskAdapterObjective
    from masklab.objectives.maskalign import MaskAlignObjective
    from masklab.objectives.masksearch import RAMPReader
    from masklab.objectives.mayor import MayorObjective
    from masklab.objectives.mdiff4str import ARReader, MDiff4STR
    from masklab.objectives.mdm import MDM, MDMSFT
    from masklab.objectives.meap import MEAP
    from masklab.objectives.mllmseg import MLLMSeg
    from masklab.objectives.mlm import MLM, CorruptionMLM
    from masklab.objectives.mto import SimMIMObjective
    from masklab.objectives.ngram import ErnieGram
    from masklab.objectives.oneref import OneRefObjective
    from masklab.objectives.osm import OSMObjective
    from masklab.objectives.pmp import PMPObjective
    from masklab.objectives.segagent import SegAgentObjective
    from masklab.objectives.stamp import Stamp
    from masklab.objectives.text4seg import Text4Seg
    from masklab.objectives.w2vbert import W2vBERTObjective

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
        ("drbert", DrBERT, "BERT MLM through a pretraining-only decoder (DrBERT): layers and/or absolute positions"),
        ("simmim", SimMIMObjective, "SimMIM masked image modelling (L1 on masked pixels), optional MTO weights"),
        ("duin-vqvae", DuINVQVAE, "Du-IN stage 1: VQ-VAE tokenizer of multichannel signal segments"),
        ("duin-mae", DuINMaskedCodes, "Du-IN stage 2: masked prediction of the frozen tokenizer's codes"),
        ("w2v-bert", W2vBERTObjective, "W2v-BERT: contrastive over Gumbel-quantized frames + MLM over their codes"),
        ("lamp", LaMPObjective, "LaMP: symmetric text-motion InfoNCE + text-conditioned masked motion tokens"),
        ("mdiff4str", MDiff4STR, "MDiff4STR: six noising strategies + the reflect loss for scene-text reading"),
        ("ar-reader", ARReader, "autoregressive scene-text reader, the baseline of MDiff4STR"),
        ("text4seg", Text4Seg, "Text4Seg: next-token loss on R-RLE, plain or brick mask descriptors"),
        ("stamp", Stamp, "STAMP: <seg> token + all mask tokens in one parallel pass (BCE + dice)"),
        ("mllmseg", MLLMSeg, "MLLMSeg: LM loss + light mask decoder (focal + dice)"),
        ("oneref", OneRefObjective, "OneRef: referring-aware MIM and MLM + box regression in one tower"),
        ("segagent", SegAgentObjective, "SegAgent: next-click imitation of the simulated annotator"),
        ("mask-adapter", MaskAdapterObjective, "Mask-Adapter: semantic activation maps + mask-consistency loss"),
        ("mayor", MayorObjective, "MAYOR: RoI mask head with instance-aware or plain pixel targets"),
        ("osm", OSMObjective, "OSM: generative mask classification (class names as words) or a closed-set head"),
        ("pmp", PMPObjective, "Prompt-guided Mask Proposal: query proposals that read the expression"),
        ("adjust", AdjustObjective, "ADJUST: a one-layer sampler head on a frozen MDM, KL to its exact conditionals"),
        ("marten", MartenObjective, "Marten VQAMask: answer LM loss + a mask generator of all visual text"),
    ]:
        OBJECTIVES.register(name, summary, cls)


_register_all()

__all__ = ["OBJECTIVES", "Objective", "logits_of"]
