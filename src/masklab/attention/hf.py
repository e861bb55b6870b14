"""Run any transformers model with masklab masks, per layer.

``register()`` adds an attention implementation named ``"masklab"`` to transformers' ``AttentionInterface`` and
``AttentionMaskInterface``. The mask interface does not build a tensor: it returns a ``MaskContext`` holding what
the model asked for (its own mask function, the padding mask, offsets). Each attention layer then picks its mask:
the masklab mask attached to that layer (``module.masklab_mask``, set by ``use_masks``, keyed on
``module.layer_idx``) or else the model's own mask, ANDs the padding mask, compiles it with ``to_dense`` (once per
forward and mask), and calls transformers' SDPA attention. With no per-layer mask the result is the model's default.

"Do Not (Always) Look Right" (Dukic & Snajder, 2024, arXiv:2401.14556, Sec. 3): for sequence labelling, remove the
causal mask in a chosen group of decoder layers while fine-tuning; ``bidirectional_layers(model, layers)`` does that
here (padding stays hidden).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, prepare_padding_mask

from masklab.attention.compile import check_shape
from masklab.attention.mods import MaskFn, full
from masklab.attention.spec import parse, parse_layerwise

__all__ = [
    "NAME",
    "MaskContext",
    "register",
    "use_masks",
    "bidirectional_layers",
    "clear_masks",
    "layer_masks",
]

NAME = "masklab"


@dataclass
class MaskContext:
    """What the model's mask builder was asked for; one per forward and mask type, shared by layers."""

    batch_size: int
    q_length: int
    kv_length: int
    q_offset: int
    kv_offset: int
    mask_function: Callable  # the model's own (causal / sliding / bidirectional ...) mask function
    padding_mask: torch.Tensor | None  # (B, kv_length) bool, True = real token
    device: torch.device
    _dense: dict = field(default_factory=dict)  # id(mask fn) -> (B, 1, Q, K) bool

    def dense(self, fn: Callable | None) -> torch.Tensor:
        """``fn`` (or the model's own mask when None) AND padding, as ``(B, 1, q_length, kv_length)`` bool."""
        key = id(fn)
        hit = self._dense.get(key)
        if hit is not None:
            return hit[1]
        if fn is not None:  # a masklab mask states its own constraints (document length, q_len == kv_len)
            check_shape(fn, self.q_offset + self.q_length, self.kv_offset + self.kv_length)
        base = self.mask_function if fn is None else fn
        pad = self.padding_mask

        def with_padding(b, h, q, kv):
            m = base(b, h, q, kv)
            return m if pad is None else m & pad[b, kv]

        b = torch.arange(self.batch_size, device=self.device).view(-1, 1, 1, 1)
        h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=self.device)
        q = (torch.arange(self.q_length, device=self.device) + self.q_offset).view(1, 1, -1, 1)
        kv = (torch.arange(self.kv_length, device=self.device) + self.kv_offset).view(1, 1, 1, -1)
        out = with_padding(b, h, q, kv).expand(self.batch_size, 1, self.q_length, self.kv_length)
        self._dense[key] = (fn, out)  # keep fn alive so its id is not reused within this forward
        return out

    # a few models read these off the mask object
    @property
    def shape(self):
        return (self.batch_size, 1, self.q_length, self.kv_length)

    @property
    def ndim(self):
        return 4


def _mask_interface(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function: Callable = causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    **kwargs,
) -> MaskContext:
    padding_mask = prepare_padding_mask(attention_mask, kv_length, kv_offset)
    return MaskContext(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=int(q_offset),
        kv_offset=int(kv_offset),
        mask_function=mask_function,
        padding_mask=padding_mask,
        device=torch.device(device),
    )


def _attention_forward(module, query, key, value, attention_mask, **kwargs):
    """transformers attention function: pick this layer's mask, compile it, run SDPA (trains anywhere)."""
    if isinstance(attention_mask, MaskContext):
        attention_mask = attention_mask.dense(getattr(module, "masklab_mask", None))
    elif getattr(module, "masklab_mask", None) is not None:
        raise ValueError(
            f"layer {getattr(module, 'layer_idx', '?')} has a masklab mask but the model passed a "
            f"{type(attention_mask).__name__} mask; build inputs through the model's forward"
        )
    kwargs["is_causal"] = False  # the mask says everything; never let SDPA add its own causal mask
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> str:
    """Register ``"masklab"`` with transformers (idempotent); returns the implementation name."""
    AttentionInterface.register(NAME, _attention_forward)
    AttentionMaskInterface.register(NAME, _mask_interface)
    return NAME


def _attention_modules(model) -> dict[int, torch.nn.Module]:
    """Self-attention modules by ``layer_idx`` (with ``layer_idx`` and ``q_proj`` or ``is_causal``)."""
    out: dict[int, torch.nn.Module] = {}
    for mod in model.modules():
        idx = getattr(mod, "layer_idx", None)
        if idx is None or not (hasattr(mod, "is_causal") or hasattr(mod, "q_proj")):
            continue
        if idx in out:
            raise ValueError(f"two attention modules share layer_idx {idx}; masklab.hf supports one stack")
        out[idx] = mod
    if not out:
        raise ValueError(f"no attention modules with layer_idx found in {type(model).__name__}")
    return out


def _set_impl(model) -> None:
    register()
    try:
        model.set_attn_implementation(NAME)
    except (AttributeError, ValueError, KeyError):  # older / custom models: set it in the config directly
        model.config._attn_implementation = NAME


def use_masks(
    model,
    plan: MaskFn | str | Mapping[int, MaskFn | str] | Callable[[int], MaskFn | None] | None,
) -> dict[int, MaskFn]:
    """Run ``model`` through masklab, with per-layer masks from ``plan``.

    ``plan``: one mask (or spec) for every layer; a mapping ``layer_idx -> mask`` (other layers keep the model's own
    mask); a ``"layerwise:..."`` spec; a function ``layer_idx -> mask or None``; or None (model's own masks, computed by
    masklab). Padding from ``attention_mask`` is always hidden. Returns the layer -> mask map applied.
    """
    layers = _attention_modules(model)
    if isinstance(plan, str):
        plan = parse_layerwise(plan) if plan.strip().startswith("layerwise:") else parse(plan)
    if plan is None:
        chosen: dict[int, MaskFn] = {}
    elif isinstance(plan, Mapping):
        chosen = {int(i): (parse(m) if isinstance(m, str) else m) for i, m in plan.items()}
    elif callable(plan) and getattr(plan, "__code__", None) is not None and plan.__code__.co_argcount == 1:
        chosen = {i: m for i in layers if (m := plan(i)) is not None}
    elif callable(plan):
        chosen = dict.fromkeys(layers, plan)
    else:
        raise ValueError(f"plan must be a mask, spec, mapping or layer function, got {type(plan).__name__}")
    unknown = sorted(set(chosen) - set(layers))
    if unknown:
        raise ValueError(f"layers {unknown} not in model (layers 0..{max(layers)})")
    for i, mod in layers.items():
        mod.masklab_mask = chosen.get(i)
    _set_impl(model)
    return chosen


def bidirectional_layers(model, layers: Iterable[int] | str) -> dict[int, MaskFn]:
    """ "Do Not (Always) Look Right": make ``layers`` of a causal LM bidirectional, keep the others causal."""
    if isinstance(layers, str):
        from masklab.attention.spec import parse_layers

        layers = parse_layers(layers)
    fn = full()
    return use_masks(model, dict.fromkeys(layers, fn))


def layer_masks(model) -> dict[int, MaskFn | None]:
    """The masklab mask attached to each attention layer (None = the model's own)."""
    return {i: getattr(m, "masklab_mask", None) for i, m in _attention_modules(model).items()}


def clear_masks(model, attn_implementation: str = "sdpa") -> None:
    """Detach masklab masks and switch back to ``attn_implementation``."""
    for mod in _attention_modules(model).values():
        mod.masklab_mask = None
    model.set_attn_implementation(attn_implementation)
