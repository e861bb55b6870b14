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
    ("gpt2", "mdm-tiny", ["adapt=causal", "anneal_steps=6"]),
    ("minilm", "mdm-tiny", []),
]


def _weights(folder) -> dict:
    """Tensors by name, without a base-model prefix (a BertModel folder names `encoder.x` what a BertForMaskedLM
    names `bert.encoder.x`)."""
    files = sorted(folder.glob("*.safetensors"))
    out = {k: v for f in files if f.name != "optimizer.safetensors" for k, v in load_file(str(f)).items()}
    return {k.removeprefix("bert."): v for k, v in out.items()}


@pytest.mark.parametrize("kind, recipe, extra", CASES, ids=["-".join([k, r, *e]) for k, r, e in CASES])
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


def test_annealed_attention_is_diffugpts_causal_or_random_pairs():
    """DiffuLLaMA's get_anneal_attn_mask: causal OR Bernoulli(ratio) per pair, shared by the batch; the ratio is
    min(1, (step + 1) / anneal_steps); the draw is keyed on the step."""
    from masklab.attention.compile import to_dense
    from masklab.corrupt.keyed import example_keys
    from masklab.models.pretrained import anneal_ratio, annealed_attention

    assert [anneal_ratio(s, 4) for s in (0, 1, 2, 3, 9)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert anneal_ratio(0, 0) == 1.0
    n = 64
    k0, k1 = example_keys(0, 0, [0])[0], example_keys(0, 1, [0])[0]
    lower = torch.ones(n, n, dtype=torch.bool).tril()
    assert torch.equal(to_dense(annealed_attention(n, 0.0, k0), n, n)[0, 0], lower)
    assert to_dense(annealed_attention(n, 1.0, k0), n, n).all()
    for ratio in (0.1, 0.5, 0.9):
        m = to_dense(annealed_attention(n, ratio, k0), n, n, batch=3)
        assert torch.equal(m[0], m[2]) and m[0, 0][lower].all()  # one draw for the batch; causal pairs always
        upper = m[0, 0][~lower].float()
        share, sd = upper.mean().item(), (ratio * (1 - ratio) / upper.numel()) ** 0.5
        assert abs(share - ratio) < 5 * sd, (ratio, share)  # 2016 independent pairs
    assert torch.equal(to_dense(annealed_attention(n, 0.5, k0), n, n), to_dense(annealed_attention(n, 0.5, k0), n, n))
    assert not torch.equal(
        to_dense(annealed_attention(n, 0.5, k0), n, n), to_dense(annealed_attention(n, 0.5, k1), n, n)
    )


def test_an_annealing_adapted_lm_starts_causal_and_ends_bidirectional(pretrained):
    """At ratio ~0 the adapted model in training is the causal LM shifted (so the future cannot change the past);
    after the anneal, and in eval, every position sees every other; user masks are left as they were."""
    from masklab.attention.hf import layer_masks
    from masklab.corrupt.keyed import example_keys
    from masklab.models.pretrained import load_pretrained

    pre = load_pretrained(pretrained("llama"), head="masked", adapt="causal", anneal_steps=10**9)
    model, tok = pre.model.train(), pre.tokenizer
    assert any("annealed" in n for n in pre.notes)
    model.lm.config.attention_dropout = 0.0
    ids = torch.tensor([tok.encode("def f(x): return x + 1")])
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 50
    before = dict(layer_masks(model.lm))
    model.begin_step(0, example_keys(0, 0, [0])[0])  # ratio 1e-9: the draw opens no pair
    a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1])  # causal: the last token changes no earlier position
    lm = model.lm(input_ids=torch.cat([torch.tensor([[model.bos_id]]), ids], 1)).logits  # bidirectional here
    assert not torch.allclose(a, lm[:, :-1])
    assert layer_masks(model.lm) == before  # the anneal mask lived for that forward only
    model.begin_step(10**9, example_keys(0, 10**9, [0])[0])  # the anneal is over
    a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    assert not torch.allclose(a[:, :-1], b[:, :-1])
    with pytest.raises(ValueError, match="anneal_steps"):
        load_pretrained(pretrained("llama"), head="masked", adapt="none", anneal_steps=5)


def test_the_loop_hands_each_step_to_an_annealing_model(pretrained, corpus, tmp_path, monkeypatch):
    from masklab.models.pretrained import ShiftedMaskedLM

    seen, real = [], ShiftedMaskedLM.begin_step
    monkeypatch.setattr(ShiftedMaskedLM, "begin_step", lambda self, s, k: seen.append(s) or real(self, s, k))
    argv = ["train", "--recipe", "mdm-tiny", "--out", str(tmp_path / "run"), f"init={pretrained('gpt2')}",
            f"data={corpus}", "adapt=causal", "anneal_steps=3", *FAST]  # fmt: skip
    assert main(argv) == 0
    assert seen == list(range(12))
