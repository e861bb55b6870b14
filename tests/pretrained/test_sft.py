"""MDM supervised fine-tuning (LLaDA, Eq. 5): the prompt is never noised, the loss is normalised by the response
length, responses are padded with EOS (which is learnt), and `mdm-sft` trains from scratch or from a folder."""

import json
import math

import pytest
import torch

from masklab.cli import main
from masklab.corrupt import keyed, sample_t
from masklab.data.sft import sft_examples, sft_pairs
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.objectives.mdm import MDMSFT

PAIRS = [{"prompt": f"Add {a} and {b}: ", "response": str(a + b)} for a in range(12) for b in range(12)]


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


class Recorder(torch.nn.Module):
    """A fixed-logit model that records its inputs: uniform logits, so every CE is log V."""

    def __init__(self, V):
        super().__init__()
        self.V, self.seen = V, []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        self.seen.append(input_ids.clone())
        return torch.zeros(*input_ids.shape, self.V) + self.w


def test_rows_are_prompt_then_response_padded_with_eos():
    tok = byte_tokenizer()
    rows, dropped = sft_examples([("ab", "xyz"), ("a" * 40, "never fits")], tok, 16)
    assert dropped == 1 and rows.shape == (1, 17)
    n_prompt = int(rows[0, 0])
    ids = rows[0, 1:].tolist()
    assert ids[0] == tok.bos_token_id and n_prompt == 3  # BOS + "ab"
    assert tok.decode(ids[n_prompt : n_prompt + 3]) == "xyz"
    assert ids[n_prompt + 3 :] == [tok.eos_token_id] * (16 - n_prompt - 3)


def test_prompt_never_noised_and_loss_is_per_response_token():
    tok = byte_tokenizer()
    info = token_info(tok)
    rows, _ = sft_examples([("prompt one ", "yes"), ("a longer prompt here ", "no, not this")], tok, 40)
    model = Recorder(info.vocab_size)
    obj = MDMSFT(model, info)
    for seed in range(30):
        keys = keyed.train_keys(seed, 0, torch.arange(2))
        loss, _ = obj(rows, keys)
        x = model.seen[-1]
        prompt = torch.arange(40)[None] < rows[:, :1]
        assert not (x[prompt] == info.mask_id).any()  # the prompt is never noised
        masked = x == info.mask_id
        t = sample_t(keys, eps=obj.eps)
        want = ((masked.float() / t[:, None]).sum(1) * math.log(info.vocab_size) / (~prompt).sum(1)).mean()
        torch.testing.assert_close(loss, want)  # sum of CE/t over masked response tokens / response length
    eos_masked = torch.stack([(s == info.mask_id) & (rows[:, 1:] == info.eos_id) for s in model.seen]).any()
    assert eos_masked  # EOS padding is part of the response and gets noised, so it is learnt


def test_mdm_sft_recipe_trains_and_generates(sft_file, tmp_path, capsys):
    out = tmp_path / "sft"
    argv = ["train", "--recipe", "mdm-sft", "--out", str(out), f"data={sft_file}", "preset=micro", "seq_len=24",
            "steps=40", "batch_size=16", "lr=3e-3", "eval_every=0", "ckpt_every=0", "eval_batches=2", "log_every=5",
            "max_minutes=0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    losses = [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    meta = json.loads((out / "model" / "masklab.json").read_text())
    assert meta["info"]["train_pairs"] + meta["info"]["valid_pairs"] == len(PAIRS) and meta["info"]["valid_pairs"] > 0
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "Add 3 and 4: <mask:3>", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("Add 3 and 4: ")


def test_sft_data_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="line 1 needs string fields 'prompt' and 'response'"):
        sft_pairs(str(bad))
    assert main(["train", "--recipe", "mdm-sft", "--out", str(tmp_path / "r"), "data=notes.txt"]) == 2
    assert "SFT needs a .jsonl file" in capsys.readouterr().err


def test_the_stdlib_pairs_are_functions_with_their_docstring_as_the_prompt():
    train, valid, _ = sft_pairs("stdlib-sft")
    assert len(train) > 1000 and len(valid) > 50
    prompt, response = train[0]
    assert prompt.startswith("Write a Python function that does this: ") and response.startswith(("def ", "async "))
    assert not set(train) & set(valid)
