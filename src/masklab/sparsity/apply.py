"""Prune any ``nn.Module`` in place:
``sparsify_(model, method="magnitude" | "wanda" | "sparsegpt" | "maskllm")``.

Each method is one function ``(model, layers, n, m, calib, **options) -> {name: keep_mask}`` registered in
``PRUNER`` (kind "sparsity"); ``sparsify_`` picks the layers, checks the inputs, runs the method, multiplies the
masks into the weights and returns a per-layer ``SparsityReport``.

``calib`` is what the model is called with during calibration: a dict of tensors (``model(**batch)``, as a
tokenizer returns), a tensor (``model(batch)``), or an iterable of such batches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from masklab.registry import Registry

from .nm import is_nm, nm_mask
from .scores import collect_input_stats, iter_calib, sparsegpt_prune, wanda

__all__ = [
    "sparsify_",
    "default_filter",
    "SparsityReport",
    "LayerReport",
    "PRUNER",
    "export_semi_structured",
]

# Last name components that mark an output head: HF's lm_head/classifier/score/qa_outputs, BERT's cls.* and
# pooler, timm's head/fc.
_HEAD_PARTS = {
    "lm_head",
    "classifier",
    "score",
    "qa_outputs",
    "head",
    "heads",
    "cls",
    "pooler",
    "output_projection",
}


def is_linear(module: nn.Module) -> bool:
    """``nn.Linear``, or transformers' ``Conv1D`` (GPT-2's linear layers, weight stored [in, out])."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def weight_of(module: nn.Module) -> torch.Tensor:
    """The layer's weight as ``[out, in]`` (a transposed view for ``Conv1D``; in-place edits write through)."""
    return module.weight.T if type(module).__name__ == "Conv1D" else module.weight


def default_filter(name: str, module: nn.Module) -> bool:
    """Every linear layer (:func:`is_linear`) that is not an output head (a name component in ``_HEAD_PARTS``)."""
    return is_linear(module) and not (set(name.split(".")) & _HEAD_PARTS)


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, ...]
    kept: int
    total: int
    nm_ok: bool  # every group of m along the input dimension keeps exactly n

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total


@dataclass
class SparsityReport:
    """Per-layer result of ``sparsify_``; ``masks`` holds the bool keep-masks by layer name."""

    method: str
    n: int
    m: int
    layers: list[LayerReport] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def sparsity(self) -> float:
        """Fraction of pruned weights over all pruned layers."""
        total = sum(r.total for r in self.layers)
        return 1.0 - sum(r.kept for r in self.layers) / max(total, 1)

    def table(self) -> str:
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}}  {'shape':>12}  {'sparsity':>8}  {self.n}:{self.m}"]
        for r in self.layers:
            shape = "x".join(map(str, r.shape))
            lines.append(f"{r.name:<{w}}  {shape:>12}  {r.sparsity:8.3f}  {'ok' if r.nm_ok else 'NO'}")
        lines.append(f"{'total':<{w}}  {'':>12}  {self.sparsity:8.3f}  method={self.method}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "n": self.n,
            "m": self.m,
            "sparsity": self.sparsity,
            "layers": [
                {"name": r.name, "shape": list(r.shape), "sparsity": r.sparsity, "nm_ok": r.nm_ok} for r in self.layers
            ],
        }


PRUNER = Registry("sparsity", "N:M pruning methods: (model, layers, n, m, calib, **options) -> {layer: keep_mask}")


def _needs_calib(method: str, calib) -> None:
    if calib is None:
        raise ValueError(f"method {method!r} needs calibration data: pass calib=<batch or iterable of batches>")


@PRUNER.register("magnitude", "keep the n largest |W| of every m consecutive input weights")
def _magnitude(model, layers, n, m, calib, pad=False):
    return {name: nm_mask(weight_of(mod), n, m, pad=pad) for name, mod in layers.items()}


@PRUNER.register("wanda", "Wanda: keep the n largest |W_ij| * ||X_j||_2 per group (Sun et al., 2024, Eq. 1)")
def _wanda(model, layers, n, m, calib, pad=False):
    _needs_calib("wanda", calib)
    stats = collect_input_stats(model, layers, calib)
    return {
        name: nm_mask(
            weight_of(mod), n, m, scores=wanda(weight_of(mod), stats[name].norm.to(mod.weight.device)), pad=pad
        )
        for name, mod in layers.items()
    }


@PRUNER.register(
    "sparsegpt", "SparseGPT: OBS saliency per group, survivors updated to compensate (Frantar & Alistarh, 2023)"
)
def _sparsegpt(model, layers, n, m, calib, blocksize=128, percdamp=0.01):
    """One-shot SparseGPT; each layer's Hessian comes from the dense model's activations (a simplification of
    the paper's sequential layer-by-layer pass, which feeds each layer the already-pruned model's inputs)."""
    _needs_calib("sparsegpt", calib)
    calib = list(iter_calib(calib))
    stats = collect_input_stats(model, layers, calib, hessian=True)
    masks = {}
    for name, mod in layers.items():
        w, keep = sparsegpt_prune(weight_of(mod), stats[name].hessian, n, m, blocksize, percdamp)
        with torch.no_grad():
            weight_of(mod).copy_(w)
        masks[name] = keep
    return masks


@PRUNER.register(
    "maskllm", "MaskLLM: a Gumbel-softmax choice among the N:M patterns, learnt end to end (Fang et al., 2024)"
)
def _maskllm(model, layers, n, m, calib, prior="wanda", loss_fn=None, batches=None, log=None, **cfg_kwargs):
    """MaskLLM from a one-shot prior mask (``prior``: "magnitude", "wanda" or None, computed on ``calib``).
    ``loss_fn(model, batch)`` defaults to distilling the dense model's outputs
    (``learnable.distill_loss_fn``); it is trained on ``batches`` (default: the calibration batches)."""
    from .learnable import MaskLLMConfig, distill_loss_fn, train_masks

    _needs_calib("maskllm", calib)
    conv = [name for name, mod in layers.items() if weight_of(mod) is not mod.weight]
    if conv:
        raise ValueError(f"maskllm learns masks of nn.Linear layers; {conv[0]!r} is a Conv1D (use magnitude, wanda "
                         "or sparsegpt for GPT-2-style layers)")  # fmt: skip
    calib = list(iter_calib(calib))
    cfg = MaskLLMConfig(n=n, m=m, **cfg_kwargs)
    if prior not in (None, "magnitude", "wanda"):
        raise ValueError(f"unknown MaskLLM prior {prior!r}; expected 'magnitude', 'wanda' or None")
    priors = None if prior is None else PRUNER.get(prior)(model, layers, n, m, calib)
    loss_fn = loss_fn or distill_loss_fn(model)
    return train_masks(model, layers, loss_fn, calib if batches is None else batches, cfg, priors, log)


def select_layers(model: nn.Module, filter: Callable[[str, nn.Module], bool] | str | None = None) -> dict:
    """Modules chosen by ``filter(name, module)``; a string is a regex searched in Linear layers' names."""
    if isinstance(filter, str):
        pat = re.compile(filter)
        filt = lambda name, mod: is_linear(mod) and pat.search(name) is not None  # noqa: E731
    else:
        filt = filter or default_filter
    heads = set()
    get_out = getattr(model, "get_output_embeddings", None)
    if filter is None and callable(get_out):
        try:
            out = get_out()
        except (NotImplementedError, AttributeError):
            out = None
        if out is not None:
            heads.add(id(out))
    layers = {n: mod for n, mod in model.named_modules() if filt(n, mod) and id(mod) not in heads}
    if not layers:
        raise ValueError(f"the layer filter {getattr(filter, '__name__', filter)!r} matches no layer of the model")
    for name, mod in layers.items():
        if not isinstance(getattr(mod, "weight", None), torch.Tensor) or mod.weight.dim() < 2:
            raise ValueError(f"layer {name!r} has no 2-D weight to prune")
    return layers


def sparsify_(
    model: nn.Module,
    method: str = "magnitude",
    n: int = 2,
    m: int = 4,
    calib=None,
    filter: Callable[[str, nn.Module], bool] | str | None = None,
    **options,
) -> SparsityReport:
    """Prune the chosen layers of ``model`` to N:M in place and return the per-layer report.

    - ``method``: a name in ``PRUNER``; ``wanda``, ``sparsegpt`` and ``maskllm`` need ``calib``.
    - ``filter(name, module) -> bool`` or a regex on module names; default ``default_filter`` (every Linear
      except output heads and the model's output embeddings).
    - ``options`` go to the method (``pad=True`` for magnitude/Wanda; MaskLLM's ``MaskLLMConfig`` fields,
      ``prior``, ``loss_fn``).
    Raises ``ValueError`` for an unknown method, n >= m, a missing ``calib``, a filter matching nothing, or an
    input dimension that m does not divide (unless ``pad=True``).
    """
    if method not in PRUNER:
        raise ValueError(f"unknown sparsity method {method!r}; choose from: {', '.join(PRUNER)}")
    prune = PRUNER.get(method)
    from .nm import _check_nm

    _check_nm(n, m)
    layers = select_layers(model, filter)
    if not options.get("pad"):
        for name, mod in layers.items():
            cols = weight_of(mod)[0].numel()
            if cols % m:
                raise ValueError(f"layer {name!r} has input dimension {cols}, not divisible by m={m}")
    masks = prune(model, layers, n, m, calib, **options)
    report = SparsityReport(method, n, m)
    with torch.no_grad():
        for name, mod in layers.items():
            mask = masks[name].to(mod.weight.device)
            weight_of(mod).mul_(mask.to(mod.weight.dtype))
            report.masks[name] = mask
            ok = mask[0].numel() % m == 0 and is_nm(mask, n, m)
            report.layers.append(LayerReport(name, tuple(weight_of(mod).shape), int(mask.sum()), mask.numel(), ok))
    return report


def semi_structured_support(dtype=torch.float16) -> str | None:
    """``None`` if ``to_sparse_semi_structured`` can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "unsupported: 2:4 semi-structured kernels need a CUDA GPU (none available)"
    if torch.cuda.get_device_capability() < (8, 0):
        return f"unsupported: needs compute capability >= 8.0, got {torch.cuda.get_device_capability()}"
    if dtype not in (torch.float16, torch.bfloat16, torch.int8, torch.float32):
        return f"unsupported dtype {dtype}"
    return None


def export_semi_structured(model: nn.Module, names: list[str] | Mapping | None = None) -> dict[str, str]:
    """Replace the weights of 2:4-pruned Linear layers with ``torch.sparse.SparseSemiStructuredTensor``.

    Returns ``{layer: "ok" | reason}``. On hardware without support (CPU, pre-Ampere GPU) nothing changes and
    every layer reports why; a layer whose shape or dtype the kernel refuses reports the kernel's message.
    """
    modules = dict(model.named_modules())
    names = list(names) if names is not None else [n for n, mod in modules.items() if isinstance(mod, nn.Linear)]
    status = {}
    for name in names:
        mod = modules[name]
        reason = semi_structured_support(mod.weight.dtype)
        if reason is None and not is_nm(mod.weight.detach() != 0, 2, 4, exact=False):
            reason = "not 2:4 sparse"
        if reason is None:
            try:
                from torch.sparse import to_sparse_semi_structured

                mod.weight = nn.Parameter(to_sparse_semi_structured(mod.weight.detach()), requires_grad=False)
                reason = "ok"
            except (RuntimeError, ValueError, NotImplementedError) as e:
                reason = f"unsupported: {str(e).splitlines()[0]}"
        status[name] = reason
    return status
