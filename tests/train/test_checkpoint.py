"""Checkpoints are atomic, verified on load, and reload with AutoModelForMaskedLM."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.mdm import MDM
from masklab.train import checkpoint


@pytest.fixture
def saved(tmp_path):
    tok = byte_tokenizer()
    info = token_info(tok)
    obj = MDM(build_model("modernbert", "micro", info, 16), info)
    opt = torch.optim.AdamW(obj.parameters())
    obj(torch.randint(5, 200, (2, 16)), torch.arange(2))[0].backward()
    opt.step()
    path = checkpoint.save(
        tmp_path / "model", obj, recipe={"recipe_class": "MDMRecipe"}, step=3, tokenizer=tok, optimizer=opt
    )
    return path, obj, opt


def test_save_reload_and_manifest(saved):
    path, obj, opt = saved
    meta = checkpoint.verify(path)
    assert meta["step"] == 3 and {"model.safetensors", "optimizer.safetensors", "tokenizer.json"} <= set(meta["files"])
    model = AutoModelForMaskedLM.from_pretrained(path)
    x = torch.randint(5, 200, (1, 16))
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, obj.model.eval()(input_ids=x).logits)
    assert AutoTokenizer.from_pretrained(path).mask_token == "<mask>"
    opt2 = torch.optim.AdamW(obj.parameters())
    checkpoint.load_optimizer(path, opt2)
    assert len(opt2.state) == len(opt.state)
    for p in obj.parameters():
        assert all(torch.equal(opt.state[p][k], opt2.state[p][k]) for k in opt.state[p])


def test_resave_replaces_atomically(saved, tmp_path):
    path, obj, opt = saved
    checkpoint.save(path, obj, recipe={}, step=9, optimizer=opt)
    assert checkpoint.verify(path)["step"] == 9
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp or old folders left behind


def test_truncated_and_corrupted_files_are_detected(saved):
    path, _, _ = saved
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.verify(path)
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match="SHA-256"):
        checkpoint.verify(path)
    (path / "masklab.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupted"):
        checkpoint.verify(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a masklab checkpoint"):
        checkpoint.resolve(tmp_path)
    with pytest.raises(FileNotFoundError):
        checkpoint.resolve(tmp_path / "missing")
    (tmp_path / "masklab.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format"):
        checkpoint.verify(tmp_path)
