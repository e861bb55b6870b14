"""Samplers for masked-diffusion generation, one file each, all with one call signature:

    sampler(model_fn, x, *, mask_id, steps, keys, temperature, top_k, top_p, order, **options) -> x

``model_fn(x)`` returns logits [B, L, V]; ``x`` [B, L] holds ``mask_id`` where tokens are to be generated;
``keys`` [B] are per-row keys (a row's output depends only on its key and prompt); ``order`` [B, L] int is filled
in place with the step at which each position was revealed (-1 stays for prompt tokens). The sampler returns the
filled ids.
"""

from masklab.sample.samplers.confidence import confidence

SAMPLERS = {"confidence": confidence}

__all__ = ["SAMPLERS"]
