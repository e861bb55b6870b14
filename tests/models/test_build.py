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
    sizes = [count_parameters(build_model("modernbert", p, INFO, 64)) for p in ("micro", "mini", "tiny", "small")]
    assert sizes == sorted(sizes) and 1.0e6 < sizes[2] < 2.0e6  # tiny: the demo's ~1.4M parameters
    assert set(PRESETS) == {"micro", "mini", "tiny", "small", "base"}


def test_unknown_preset_and_arch():
    with pytest.raises(ValueError, match="preset"):
        build_model("modernbert", "huge", INFO, 8)
    with pytest.raises(ValueError, match="arch"):
        build_model("gpt", "micro", INFO, 8)


def test_seq_len_beyond_max_position_embeddings_is_refused_before_allocating():
    # issue 21.9: seq_len=100000 used to build the model and then allocate an ~80 GB attention mask
    import pytest

    from masklab.models import MAX_POSITIONS, build_model
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    with pytest.raises(ValueError, match=r"seq_len=100000 must be in \[2, 8192\]"):
        apply_overrides(get_recipe("mdm-tiny"), ["seq_len=100000"])
    info = type("Info", (), {"vocab_size": 16, "pad_id": 0, "eos_id": 1, "bos_id": 2})()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        build_model("modernbert", "micro", info, MAX_POSITIONS + 1)


def test_transformer_encoder_blocks_start_from_their_own_weights():
    """nn.TransformerEncoder deep-copies one layer; masklab's encoder draws each block anew (names unchanged)."""
    from masklab.models.blocks import transformer_encoder

    torch.manual_seed(0)
    enc = transformer_encoder(16, 3, 2, 32)
    w = [layer.linear1.weight for layer in enc.layers]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    plain = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 3)
    assert set(enc.state_dict()) == set(plain.state_dict())
