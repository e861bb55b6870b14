"""Samplers for masked-diffusion generation, one file each, all with one call signature:

    sampler(model_fn, x, *, mask_id, steps, keys, temperature, top_k, top_p, order, stats=None, **options)
        -> x

``model_fn(x)`` returns logits [B, L, V]; ``x`` [B, L] holds ``mask_id`` where tokens are to be generated;
``steps`` is an int or one int per row [B]; ``keys`` [B] are per-row keys (a row's output depends only on its
key, its prompt and the model's logits for that row); ``order`` [B, L] int is filled in place with the step at
which each position was revealed (-1 stays for prompt tokens); ``stats`` (a dict) receives ``nfe`` (model
calls) and ``row_nfe`` [B] (calls in which each row still had a mask). The sampler returns the filled ids.
Each sampler takes only its own options by name and passes the shared ones (``keys`` to ``stats`` and the
options below) through to one :class:`Decoder`, which owns them. :data:`SAMPLER` is the registry of kind
"sampler": a new sampler registered there is offered by ``generate`` and ``--sampler`` and tested at once.

Options every sampler takes (:class:`masklab.sample.samplers._decode.DecodeOptions`): ``block_length``
(semi-autoregressive blocks over each row's masked positions), ``cfg_scale`` (classifier-free guidance; the
unconditional pass masks the prompt), ``eos_id`` / ``fill_id`` (a row stops at its first generated EOS: the
generated positions after it become ``fill_id``, default ``eos_id``), ``pad_id`` (never filled, not prompt).

============  ========================================================  =====================================
sampler       rule                                                      steps
============  ========================================================  =====================================
ancestral     MDLM: each masked token revealed w.p. (t-s)/t per step    time steps, not clamped; cached calls
fhs           first-hitting: one uniform position per step              one per masked token (steps ignored)
confidence    LLaDA/Dream: commit the k most confident per step         clamped to the masked count per row
threshold     Fast-dLLM: commit all above a threshold, >= 1 per step    set by the confidences (ignored)
remdm         ReMDM: MDLM's step, and revealed tokens masked again      time steps, not clamped; cached calls
mask_predict  Mask-Predict: predict all masks, remask the n least sure  iterations T, not clamped
============  ========================================================  =====================================
"""

from masklab.registry import Registry
from masklab.sample.samplers.ancestral import ancestral
from masklab.sample.samplers.confidence import confidence
from masklab.sample.samplers.fhs import fhs
from masklab.sample.samplers.mask_predict import mask_predict
from masklab.sample.samplers.remdm import remdm
from masklab.sample.samplers.threshold import threshold

SAMPLER = Registry(
    "sampler",
    "samplers: (model_fn, x, *, mask_id, steps, keys, temperature, top_k, top_p, order, stats, **options) -> ids",
)

SAMPLER.register("ancestral", "MDLM ancestral sampling (Eq. 7): each mask revealed w.p. (t-s)/t per step", ancestral)
SAMPLER.register("confidence", "LLaDA/Dream confidence: commit the k most confident drawn tokens per step", confidence)
SAMPLER.register("fhs", "first-hitting sampler (Zheng et al. 2024, Alg. 1): one uniform masked position per call", fhs)
SAMPLER.register("threshold", "Fast-dLLM threshold decoding: commit all above a threshold, >= 1 per step", threshold)
SAMPLER.register("remdm", "ReMDM (Wang et al. 2025): MDLM steps that also remask revealed tokens", remdm)
SAMPLER.register(
    "mask_predict", "Mask-Predict (Ghazvininejad et al. 2019): remask the N(T-t)/T least sure", mask_predict
)

__all__ = ["SAMPLER"]
