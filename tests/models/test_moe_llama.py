"""The MoE Llama: one always-chosen expert is exactly Hugging Face's dense Llama; it round-trips through
save_pretrained and masklab's checkpoint loader; the moe recipe validates its fields."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from masklab.models.moe_llama import MoELlamaConfig, MoELlamaForCausalLM, moe_layers
from masklab.train.checkpoint import load
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides
from masklab.train.recipes.moe import expert_loads

SIZE = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=24, tie_word_embeddings=True)  # fmt: skip


def _moe(**moe):
    torch.manual_seed(0)  # weight init of the toy model only
    return MoELlamaForCausalLM._from_config(MoELlamaConfig(**SIZE, **moe), attn_implementation="eager").eval()


def test_one_expert_without_capacity_is_the_dense_llama(one_thread):
    """E = 1: softmax over one expert is 1, so the layer is that expert, a Llama MLP: the logits are HF's."""
    moe = _moe(num_experts=1, num_experts_per_tok=1, capacity_factor=0.0)
    dense = LlamaForCausalLM._from_config(LlamaConfig(**SIZE), attn_implementation="eager").eval()
    state = {k.replace("mlp.experts.0.", "mlp."): v for k, v in moe.state_dict().items() if "router" not in k}
    dense.load_state_dict(state)
    x = torch.randint(0, 50, (3, 11))
    torch.testing.assert_close(moe(input_ids=x).logits, dense(input_ids=x).logits, rtol=0, atol=0)


def test_saved_moe_model_reloads_through_the_checkpoint_loader(tmp_path, one_thread):
    moe = _moe(num_experts=4, num_experts_per_tok=2, routing="expert-choice", capacity_factor=1.0)
    moe.save_pretrained(tmp_path)
    again = load(tmp_path).model  # a plain Hugging Face folder: config.architectures names the class
    assert type(again) is MoELlamaForCausalLM and [m.routing for m in moe_layers(again)] == ["expert-choice"] * 2
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(again(input_ids=x).logits, moe(input_ids=x).logits)  # sdpa there, eager here


def test_expert_loads_count_every_routed_pair(one_thread):
    """Dropless top-2: every token reaches 2 experts in every layer; with capacity, loads never exceed it."""
    x = torch.randint(0, 50, (6, 8))
    load_, dropped = expert_loads(_moe(num_experts=4, num_experts_per_tok=2, capacity_factor=0.0), x, batch_size=4)
    assert load_.shape == (2, 4) and (load_.sum(1) == 2 * x.numel()).all() and (dropped == 0).all()
    load_, dropped = expert_loads(_moe(num_experts=4, num_experts_per_tok=1, capacity_factor=0.5), x, batch_size=6)
    assert (load_ <= 6).all()  # capacity ceil(0.5 * 48 / 4) = 6 per expert, one batch of 48 tokens
    torch.testing.assert_close(dropped, 1 - load_.sum(1) / x.numel())  # top-1: a dropped pair is a dropped token


@pytest.mark.parametrize(
    "override,msg",
    [
        ("top_k=5", "top_k in \\[1, experts\\]"),
        ("experts=0", "experts >= 1"),
        ("routing=hash", "routing must be one of top-k, expert-choice"),
        ("capacity_factor=-1", "capacity_factor must be >= 0"),
        ("init=some/folder", "train from scratch"),
        ("arch=modernbert", "arch=llama"),
    ],
)
def test_moe_recipe_rejects_bad_fields(override, msg):
    with pytest.raises(ValueError, match=msg):
        apply_overrides(get_recipe("moe-tiny"), [override])
    with pytest.raises(ValueError, match="capacity_factor must be >= 0 \\(> 0 for expert-choice\\)"):
        apply_overrides(get_recipe("moe-tiny"), ["routing=expert-choice", "capacity_factor=0"])


def test_moe_recipe_trains_evaluates_and_draws_its_load(small_corpus, tmp_path, capsys, one_thread):
    """End to end through the CLI on the micro preset: train, eval (bits is the cross-entropy alone), show moe."""
    import json

    from masklab.cli import main

    out = tmp_path / "run"
    fast = ["preset=micro", "seq_len=16", "batch_size=4", "steps=2", "warmup=1", "eval_every=0", "ckpt_every=0",
            "eval_batches=1", "log_every=1", "max_minutes=0"]  # fmt: skip
    assert main(["train", "--recipe", "moe-tiny", "--data", str(small_corpus), "--out", str(out), "--no-progress",
                 *fast]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert {"bits", "balance", "z", "dropped"} <= set(summary["eval"])
    assert main(["eval", "--model", str(out), "--batches", "1"]) == 0
    capsys.readouterr()
    assert main(["show", "moe", str(out), "--out", str(tmp_path / "load.png"), "--batches", "1"]) == 0
    assert (tmp_path / "load.png").read_bytes()[:4] == b"\x89PNG"
    dense = tmp_path / "dense"
    assert main(["train", "--recipe", "ar", "--data", str(small_corpus), "--out", str(dense), "--no-progress",
                 *fast, "steps=1"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["show", "moe", str(dense), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not of an MoE recipe" in err
