"""sparsify_ on a Hugging Face model: default layer choice, every method's N:M result, errors, export."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM

from masklab.sparsity import export_semi_structured, sparsify_
from masklab.sparsity.apply import default_filter, select_layers
from masklab.sparsity.nm import is_nm


def _bert():
    torch.manual_seed(0)  # weight init of the toy model only
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    return BertForMaskedLM(cfg).eval()


def _calib(n_batches=2):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(0, 64, (2, 12), generator=g),
            "attention_mask": torch.ones(2, 12, dtype=torch.long),
        }
        for _ in range(n_batches)
    ]


def test_default_filter_takes_encoder_linears_and_skips_heads():
    model = _bert()
    names = set(select_layers(model))
    assert len(names) == 12  # 2 blocks x (q, k, v, attn out, ffn in, ffn out)
    assert all(n.startswith("bert.encoder.") for n in names)
    assert not any("cls" in n or "decoder" in n for n in names)
    assert default_filter("lm_head", nn.Linear(4, 4)) is False
    assert default_filter("model.layers.0.mlp.up_proj", nn.Linear(4, 4)) is True


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "maskllm"])
def test_every_method_leaves_each_chosen_layer_exactly_2of4(method):
    model = _bert()
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    opts = {"steps": 3} if method == "maskllm" else {}
    report = sparsify_(model, method, 2, 4, calib=None if method == "magnitude" else _calib(), **opts)
    assert len(report.layers) == 12 and report.sparsity == pytest.approx(0.5)
    mods = dict(model.named_modules())
    for r in report.layers:
        assert r.nm_ok and r.sparsity == 0.5
        w = mods[r.name].weight
        assert is_nm(report.masks[r.name], 2, 4) and not w[~report.masks[r.name]].any()
        if method != "sparsegpt":  # SparseGPT also updates the surviving weights
            assert torch.equal(w, dense[r.name + ".weight"] * report.masks[r.name])
    assert torch.equal(model.cls.predictions.transform.dense.weight, dense["cls.predictions.transform.dense.weight"])
    assert "total" in report.table() and report.to_dict()["method"] == method


def test_calibration_as_one_dict_or_an_iterable_of_dicts_agree():
    batches = _calib(1)
    a, b = _bert(), _bert()
    ra = sparsify_(a, "wanda", calib=batches[0])
    rb = sparsify_(b, "wanda", calib=iter(batches))
    assert all(torch.equal(ra.masks[k], rb.masks[k]) for k in ra.masks)


def test_regex_filter_and_custom_filter():
    model = _bert()
    report = sparsify_(model, filter=r"layer\.0\..*query")
    assert [r.name for r in report.layers] == ["bert.encoder.layer.0.attention.self.query"]


def test_bad_inputs_raise_clear_errors():
    model = _bert()
    with pytest.raises(ValueError, match="method 'wanda' needs calibration data"):
        sparsify_(model, "wanda")
    with pytest.raises(ValueError, match="method 'maskllm' needs calibration data"):
        sparsify_(model, "maskllm")
    with pytest.raises(ValueError, match="matches no layer"):
        sparsify_(model, filter=lambda name, mod: False)
    with pytest.raises(ValueError, match="unknown sparsity method 'random'"):
        sparsify_(model, "random")
    with pytest.raises(ValueError, match="n must be smaller than m"):
        sparsify_(model, n=4, m=4)
    odd = nn.Sequential(nn.Linear(6, 4))
    with pytest.raises(ValueError, match="input dimension 6, not divisible by m=4"):
        sparsify_(odd, filter=lambda n, m: isinstance(m, nn.Linear))
    report = sparsify_(odd, filter=lambda n, m: isinstance(m, nn.Linear), pad=True)
    assert report.masks["0"].sum(1).tolist() == [4] * 4  # 2 of the full group + 2 of the partial group


def test_semi_structured_export_reports_support_honestly():
    model = nn.Sequential(nn.Linear(64, 64)).half()
    sparsify_(model, filter=lambda n, m: isinstance(m, nn.Linear))
    status = export_semi_structured(model, ["0"])
    if not torch.cuda.is_available():
        assert status["0"].startswith("unsupported") and "CUDA" in status["0"]
        assert model[0].weight.layout == torch.strided
    else:
        assert status["0"] == "ok" or status["0"].startswith("unsupported")


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_gpt2_conv1d_layers_are_pruned_along_their_input_dimension(method):
    """GPT-2 stores its linear layers as Conv1D, weight [in, out]: N:M groups run along dim 0 there."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)  # toy weight init
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=16)).eval()
    calib = {"input_ids": torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))}
    report = sparsify_(model, method, 2, 4, calib=calib)
    convs = {n: m for n, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    assert set(report.masks) == set(convs) and len(convs) == 4  # c_attn, c_proj, mlp c_fc, mlp c_proj
    for name, mod in convs.items():
        assert is_nm(mod.weight.T != 0, 2, 4, exact=False), name
        assert report.masks[name].shape == mod.weight.T.shape
