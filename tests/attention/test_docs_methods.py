"""The code in docs/methods.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_doc_block_runs(block):
    assert len(BLOCKS) == 3  # MoE, Talking Heads, layer masking
    exec(compile(BLOCKS[block], f"{DOC.name}[{block}]", "exec"), {})
