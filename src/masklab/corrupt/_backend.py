"""The one switch for the CPU fast paths of the mask builders.

Backends, each giving bit-identical masks (tests/corrupt/test_kernels.py compares all three):

- ``kernel``: the compiled numba kernels (:mod:`masklab.corrupt._kernels`) where a builder has one and numba is
  installed, else the numpy code;
- ``numpy``: the vectorized numpy code;
- ``torch``: the dense torch code that every other device runs, here on the CPU as well.

Tensors off the CPU always take the torch path, whatever the switch says. The default is ``kernel``, or
``numpy`` when the environment sets ``MASKLAB_JIT=0`` (read at import). :func:`use_backend` switches for a block
(tests, benchmarks); each public builder reads the switch once, at its top.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["BACKENDS", "backend", "use_backend", "path"]

BACKENDS = ("kernel", "numpy", "torch")

_current = "numpy" if os.environ.get("MASKLAB_JIT", "1") == "0" else "kernel"


def backend() -> str:
    """The backend in force: ``kernel``, ``numpy`` or ``torch``."""
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the block with backend ``name``; the previous one is restored on exit (also on an exception)."""
    global _current
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    saved, _current = _current, name
    try:
        yield name
    finally:
        _current = saved


def path(on: torch.Tensor | torch.device) -> str:
    """The path a builder takes for data on tensor or device ``on``: ``torch`` off the CPU, else the backend."""
    cpu = on.is_cpu if torch.is_tensor(on) else on.type == "cpu"
    return _current if cpu else "torch"
