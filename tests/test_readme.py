"""The README's Python examples run as written (those that need no trained run folder)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "runs/" not in b]


def test_readme_has_runnable_examples():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS)
def test_readme_example_runs(block):
    exec(compile(block, str(README), "exec"), {})
