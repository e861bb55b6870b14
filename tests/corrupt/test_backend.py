"""The one backend switch (masklab.corrupt._backend) and the one table of keyed streams (keyed.Stream)."""

import os
import subprocess
import sys

import pytest
import torch

from masklab.corrupt import _backend, jit
from masklab.corrupt._backend import backend, use_backend
from masklab.corrupt.keyed import Stream


@pytest.mark.parametrize("env, want", [("1", "kernel"), ("0", "numpy")])
def test_default_is_kernel_unless_masklab_jit_is_0(env, want):
    code = "from masklab.corrupt._backend import backend; print(backend())"
    run = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "MASKLAB_JIT": env}, capture_output=True, text=True
    )
    assert run.stdout.strip() == want, run.stderr


def test_use_backend_switches_for_the_block_and_restores_on_exit():
    before = backend()
    with use_backend("torch"):
        assert backend() == "torch" and jit.kernels() is None
        with use_backend("numpy"):
            assert backend() == "numpy" and jit.kernels() is None
        assert backend() == "torch"
    assert backend() == before
    with pytest.raises(RuntimeError), use_backend("numpy"):
        raise RuntimeError
    assert backend() == before


def test_an_unknown_backend_is_one_line_naming_the_choices():
    with pytest.raises(ValueError, match=r"^unknown backend 'numba'; choose from kernel, numpy, torch$"):
        with use_backend("numba"):
            pass
    assert backend() in _backend.BACKENDS


def test_tensors_off_the_cpu_take_the_torch_path():
    with use_backend("numpy"):
        assert _backend.path(torch.zeros(1)) == "numpy"
        assert _backend.path(torch.device("meta")) == "torch"
        assert _backend.path(torch.zeros(1, device="meta")) == "torch"


def test_every_stream_has_its_own_value():
    """An alias would make two draws share numbers; the enum would hide it as a second name for one member."""
    assert len(Stream.__members__) == len(list(Stream))
