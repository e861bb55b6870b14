"""Presets build plain HF models that round-trip through save_pretrained / Auto classes."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import PRESETS, build_model, count_parameters

INFO = token_info(byte_tokenizer())


@pytest.mark.parametrize("arch,auto", [("modernbert", AutoModelForMaskedLM), ("llama", AutoModelForCausalLM)])
def test_micro_round_trip(tmp_path, arch, auto):
    model = build_model(arch, "micro", INFO, max_len=32).eval()
    x = torch.randint(5, 261, (2, 16))
    model.save_pretrained(tmp_path)
    again = auto.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, again(input_ids=x).logits, atol=1e-6)
    assert model(input_ids=x).logits.shape == (2, 16, 261)


def test_presets_grow():
    sizes = [count_parameters(build_model("modernbert", p, INFO, 64)) for p in ("micro", "tiny", "small")]
    assert sizes == sorted(sizes) and 1.0e6 < sizes[1] < 2.0e6
    assert set(PRESETS) == {"micro", "tiny", "small", "base"}


def test_unknown_preset_and_arch():
    with pytest.raises(ValueError, match="preset"):
        build_model("modernbert", "huge", INFO, 8)
    with pytest.raises(ValueError, match="arch"):
        build_model("gpt", "micro", INFO, 8)
