"""Parameter masks: which weights live.

``nm`` (N:M, unstructured, block masks), ``scores`` (magnitude, Wanda, SparseGPT), ``learnable`` (MaskLLM),
``tuning`` (regularized mask tuning), ``sft`` (LT-SFT sparse differences), ``apply`` (``sparsify_`` on any
model).
"""

from .apply import SparsityReport, default_filter, export_semi_structured, sparsify_
from .nm import block_mask, is_nm, nm_mask, nm_patterns, unstructured_mask
from .scores import magnitude, wanda
from .sft import SparseDiff, apply_, compose, lt_sft

__all__ = [
    "sparsify_",
    "SparsityReport",
    "default_filter",
    "export_semi_structured",
    "nm_mask",
    "unstructured_mask",
    "block_mask",
    "nm_patterns",
    "is_nm",
    "magnitude",
    "wanda",
    "SparseDiff",
    "apply_",
    "compose",
    "lt_sft",
]
