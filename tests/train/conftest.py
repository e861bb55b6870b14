"""Launching ``masklab`` in child processes (one rank, or two under torchrun) with a hang report.

A run that outlives ``timeout`` gets SIGABRT in each of its processes (torchrun starts every rank in a session of
its own, so a process group would miss them); with PYTHONFAULTHANDLER set, each prints every thread's stack to
stderr first, so a failure says where the ranks (or torchrun) waited."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "masklab"]
ONE = [sys.executable, "-m", "masklab"]


def _signal(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _launch(args: list[str], ranks: int = 1, timeout: float = 240) -> str:
    args = [*(TORCHRUN if ranks == 2 else ONE), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        _signal(family, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _signal(family, signal.SIGKILL)
            out, err = proc.communicate()
        what = " ".join(args[1:8])
        pytest.fail(f"hung for {timeout:.0f} s: {what} ...\nstdout:\n{out[-2000:]}\nstderr:\n{err[-8000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.fixture
def launch():
    """``launch(args, ranks=1|2)`` runs ``masklab ARGS`` (2: under torchrun) and returns its stdout; fails with every
    stack if it hangs."""
    return _launch
