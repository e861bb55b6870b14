"""Optional compiled CPU kernels: :mod:`masklab.corrupt._kernels` when numba is installed.

``pip install masklab[fast]`` adds numba; the token and frame mask builders then run one compiled pass per
batch on the CPU instead of their vectorized numpy code, with bit-identical results. They run while the
backend (:mod:`masklab.corrupt._backend`) is ``kernel``, the default; ``MASKLAB_JIT=0`` (read at import) or
``use_backend("numpy")`` switches them off. The first call of each kernel compiles it (about a second) and caches
the machine code beside the module, so later processes load it.
"""

from __future__ import annotations

import functools
import importlib.util

from masklab.corrupt import _backend


@functools.cache
def _load():
    if importlib.util.find_spec("numba") is None:
        return None
    from masklab.corrupt import _kernels

    return _kernels


def kernels():
    """The kernel module, or None when numba is missing or the backend is not ``kernel``."""
    return _load() if _backend.backend() == "kernel" else None


def describe() -> str:
    """Which CPU path the token and frame builders take, for benchmark headers."""
    name = _backend.backend()
    if name == "torch":
        return "torch (the dense path of other devices)"
    if _load() is None:
        return "numpy (numba not installed)"
    if name == "numpy":
        return "numpy (kernels switched off)"
    import numba

    return f"numba {numba.__version__} kernels"
