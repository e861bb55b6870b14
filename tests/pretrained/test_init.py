"""init=PATH: every text recipe continues from a pretrained Hugging Face folder (BERT, ModernBERT, Llama, GPT-2
and the real all-MiniLM-L6-v2); the weights change and the loss falls; what cannot work is one line, exit 2."""

import json

import pytest
import torch
from safetensors.torch import load_file

from masklab.cli import main
from masklab.train import checkpoint

FAST = ["steps=12", "log_every=1", "eval_every=0", "ckpt_every=0", "eval_batches=1", "max_minutes=0", "warmup=0",
        "batch_size=8", "seq_len=32", "lr=3e-3", "--no-progress"]  # fmt: skip

CASES = [  # (folder kind, recipe, extra overrides)
    ("bert", "mdm-tiny", []),
    ("modernbert", "mlm", []),
    ("modernbert", "electra", []),
    ("llama", "ar", []),
    ("gpt2", "meap", []),
    ("gpt2", "mdm-tiny", ["adapt=causal"]),
    ("llama", "mdm-tiny", ["adapt=causal"]),
    ("minilm", "mdm-tiny", []),
]


def _weights(folder) -> dict:
    """Tensors by name, without a base-model prefix (a BertModel folder names `encoder.x` what a BertForMaskedLM
    names `bert.encoder.x`)."""
    files = sorted(folder.glob("*.safetensors"))
    out = {k: v for f in files if f.name != "optimizer.safetensors" for k, v in load_file(str(f)).items()}
    return {k.removeprefix("bert."): v for k, v in out.items()}


@pytest.mark.parametrize("kind, recipe, extra", CASES, ids=[f"{k}-{r}" for k, r, _ in CASES])
def test_train_from_a_pretrained_folder(pretrained, corpus, tmp_path, kind, recipe, extra):
    folder = pretrained(kind)
    out = tmp_path / "run"
    argv = ["train", "--recipe", recipe, "--out", str(out), f"init={folder}", f"data={corpus}", *FAST, *extra]
    assert main(argv) == 0
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert sum(losses[-3:]) < sum(losses[:3]), losses  # the loss falls
    before, after = _weights(folder), _weights(out / "model")
    shared = [k for k in before if k in after and before[k].shape == after[k].shape]
    assert len(shared) >= 0.8 * len(before)  # the pretrained weights were loaded, not a new model
    assert any(not torch.equal(before[k], after[k]) for k in shared)  # and they were trained
    meta = json.loads((out / "model" / "masklab.json").read_text())
    assert meta["recipe"]["init"] == str(folder) and meta["info"]["init"] == str(folder)
    loaded = checkpoint.load(out)  # the run reloads in one process
    assert loaded.tokenizer is not None and loaded.tokenizer.mask_token_id is not None or recipe == "ar"


def test_minilm_gets_an_mlm_head_tied_to_its_embeddings(pretrained):
    from masklab.models.pretrained import load_pretrained

    pre = load_pretrained(pretrained("minilm"))
    assert pre.model.get_output_embeddings().weight is pre.model.get_input_embeddings().weight
    assert any("no MLM head" in n for n in pre.notes)


def test_an_adapted_causal_lm_predicts_token_i_at_position_i_minus_1(pretrained):
    """DiffuGPT's shift: the adapted model's logits at i are the causal LM's at i - 1 (BOS before position 0)
    when attention is causal; masklab then makes it bidirectional."""
    from masklab.attention.hf import clear_masks
    from masklab.models.pretrained import load_pretrained

    pre = load_pretrained(pretrained("llama"), head="masked", adapt="causal")
    model, tok = pre.model.eval(), pre.tokenizer
    ids = torch.tensor([tok.encode("def f(x): return x")])
    bidir = model(input_ids=ids).logits
    clear_masks(model.lm)  # back to the causal LM
    causal = model(input_ids=ids).logits
    lm = model.lm(input_ids=torch.cat([torch.tensor([[model.bos_id]]), ids], 1)).logits
    torch.testing.assert_close(causal, lm[:, :-1])
    assert not torch.allclose(bidir[:, :-2], causal[:, :-2])  # future tokens now change the past


@pytest.mark.parametrize(
    "kind, recipe, extra, message",
    [
        ("gpt2", "mdm-tiny", [], "is a causal LM (gpt2); a masked objective needs an encoder, or adapt=causal"),
        ("bert", "ar", [], "is an encoder (bert); causal objectives need a causal LM"),
        ("bert", "mdm-tiny", ["adapt=causal"], "adapt=causal turns a causal LM into a masked LM"),
        ("none", "mdm-tiny", [], "is not a masklab checkpoint nor a Hugging Face model folder (no config.json)"),
        ("vocab", "mdm-tiny", [], "the tokenizer has 30522 tokens but the model's embedding has 100 rows"),
        ("nomask", "mlm", [], "has no mask token; masked objectives need one"),
    ],
)
def test_folders_that_cannot_work_are_one_line(pretrained, corpus, tmp_path, capsys, kind, recipe, extra, message):
    import transformers as T

    if kind == "none":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif kind == "vocab":  # a model smaller than its tokenizer
        folder = tmp_path / "vocab"
        T.BertForMaskedLM(T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32)).save_pretrained(folder)  # fmt: skip
        T.AutoTokenizer.from_pretrained(pretrained("bert")).save_pretrained(folder)
    elif kind == "nomask":  # an encoder whose tokenizer lost its mask token
        folder = tmp_path / "nomask"
        T.BertForMaskedLM.from_pretrained(pretrained("bert")).save_pretrained(folder)
        tok = T.AutoTokenizer.from_pretrained(pretrained("bert"))
        tok.mask_token = None
        tok.save_pretrained(folder)
    else:
        folder = pretrained(kind)
    out = tmp_path / "run"
    argv = ["train", "--recipe", recipe, "--out", str(out), f"init={folder}", f"data={corpus}", *FAST, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (out / "model").exists()  # nothing half-written
