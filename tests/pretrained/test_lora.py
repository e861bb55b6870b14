"""lora=R through peft: only the adapters train, the checkpoint's adapter reloads with peft and equals the merged
model, masklab attention masks and sparsity masks of the base stay in force, and a resumed run is exact."""

import json

import pytest
import torch

from masklab.cli import main
from masklab.corrupt import keyed

FAST = ["steps=6", "log_every=1", "eval_every=0", "ckpt_every=0", "eval_batches=1", "max_minutes=0", "warmup=0",
        "batch_size=8", "seq_len=32", "lr=1e-2", "lora=4", "--no-progress"]  # fmt: skip


def _recipe(name, *overrides):
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    return apply_overrides(get_recipe(name), list(overrides))


def test_the_adapter_reloads_with_peft_and_equals_the_merged_model(pretrained, corpus, tmp_path):
    import transformers as T
    from peft import PeftModel

    out = tmp_path / "run"
    folder = pretrained("llama")
    assert main(["train", "--recipe", "ar", "--out", str(out), f"init={folder}", f"data={corpus}", *FAST]) == 0
    meta = json.loads((out / "model" / "masklab.json").read_text())
    total = sum(p.numel() for p in T.AutoModelForCausalLM.from_pretrained(folder).parameters())
    assert 0 < meta["info"]["lora_trainable"] < 0.2 * total  # only the adapters train
    adapted = PeftModel.from_pretrained(T.AutoModelForCausalLM.from_pretrained(folder), out / "model" / "adapter")
    merged = T.AutoModelForCausalLM.from_pretrained(out / "model")
    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(adapted.eval()(ids).logits, merged.eval()(ids).logits, rtol=1e-4, atol=1e-4)
    base = T.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert not torch.allclose(base(ids).logits, merged(ids).logits, atol=1e-4)  # the adapter learnt something
    assert main(["eval", "--model", str(out), "--batches", "1"]) == 0  # every command reads the merged model


def test_a_resumed_lora_run_equals_an_uninterrupted_one(pretrained, corpus, tmp_path):
    from masklab.train.loop import train

    recipe = _recipe("mdm-tiny", f"init={pretrained('bert')}", f"data={corpus}", *FAST[:-1])
    full = train(recipe, tmp_path / "full", progress=False)
    train(recipe, tmp_path / "cut", progress=False, stop_at=3)
    resumed = train(recipe, tmp_path / "cut", resume=True, progress=False)
    assert resumed["eval"] == pytest.approx(full["eval"], rel=1e-5)


def test_attention_masks_of_the_base_stay_in_force(pretrained):
    """'Do Not (Always) Look Right': bidirectional layer groups on a causal LM, then LoRA on top."""
    import transformers as T

    from masklab.attention.hf import bidirectional_layers, layer_masks
    from masklab.models.lora import add_lora

    base = T.AutoModelForCausalLM.from_pretrained(pretrained("llama"), attn_implementation="sdpa").eval()
    ids = torch.randint(0, 200, (1, 12), generator=torch.Generator().manual_seed(1))
    causal = base(ids).logits
    bidirectional_layers(base, [0])
    masked = base(ids).logits
    assert not torch.allclose(causal[:, :-1], masked[:, :-1])  # layer 0 now sees the future
    model = add_lora(base, 4, 16.0)
    assert layer_masks(model.base_model.model)[0] is not None
    torch.testing.assert_close(model(ids).logits, masked)  # B = 0: the adapted model starts as the masked base


def test_sparsity_of_the_base_stays_fixed_while_lora_trains(pretrained, corpus, tmp_path):
    assert main(["sparsify", "--model", str(pretrained("bert")), "--out", str(tmp_path / "pruned")]) == 0
    recipe = _recipe("mlm", f"init={tmp_path / 'pruned'}", f"data={corpus}", "seq_len=32", "lora=4")
    task = recipe.build()
    objective = task.objective.train()
    bases = {n: m.base_layer.weight for n, m in objective.named_modules() if hasattr(m, "base_layer")}
    zeros = {n: (w == 0).clone() for n, w in bases.items()}
    pruned = [n for n in zeros if ".encoder." in n]  # sparsify prunes the encoder, not the MLM head's transform
    assert len(pruned) == 12 and all(zeros[n].float().mean() >= 0.5 for n in pruned)  # 2:4
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        loss, _ = objective(task.train[:8], keyed.train_keys(0, 0, torch.arange(8) + 8 * step))
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(w == 0, zeros[n]) for n, w in bases.items())  # the zeros are frozen with the base


def test_a_lora_target_that_matches_nothing_is_one_line(pretrained, corpus, tmp_path, capsys):
    argv = ["train", "--recipe", "ar", "--out", str(tmp_path / "r"), f"init={pretrained('llama')}", f"data={corpus}",
            *FAST, "lora_targets=q_proj,nope"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lora target 'nope' matches no module of LlamaForCausalLM" in err
