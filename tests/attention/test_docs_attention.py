"""The code in docs/attention.md runs as written (a tiny Llama stands in for `model`)."""

import re
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from masklab.attention.spec import parse, parse_layerwise

DOC = Path(__file__).resolve().parents[2] / "docs" / "attention.md"


def test_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2
    cfg = LlamaConfig(
        vocab_size=20,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
    )
    ns = {"model": LlamaForCausalLM(cfg).eval()}
    exec(blocks[0], ns)
    assert ns["streaming"].__name__ == "causal&(sliding_window_256|sinks_4)"
    blocks[1] = blocks[1].replace("layerwise:bidir=0-1,causal=2-3", "layerwise:bidir=0,causal=1")
    exec(blocks[1], ns)
    assert ns["model"].config._attn_implementation == "sdpa"  # the block ends with clear_masks
    with torch.no_grad():
        ns["model"](torch.tensor([[1, 2, 3]]))


def test_specs_in_the_doc_parse():
    text = DOC.read_text()
    specs = re.findall(r"^masklab show attention \"?([^\s\"]+)\"?", text, flags=re.M)
    assert len(specs) == 3
    for spec in specs:
        (parse_layerwise if spec.startswith("layerwise:") else parse)(spec)
