"""The finetune recipe and objective: each form's loss is cross-entropy at the right place, the MLM-head form predicts
among the answer tokens only (ModernBERT-Instruct), layer groups make exactly those layers bidirectional ("Do Not
(Always) Look Right"), and a run learns its task."""

import pytest
import torch
import torch.nn.functional as F

from masklab.attention.hf import layer_masks
from masklab.objectives.finetune import Finetune
from masklab.train.recipes import get_recipe
from masklab.train.recipes.base import apply_overrides
from masklab.train.recipes.finetune import _encode_texts, layer_indices


class Fixed(torch.nn.Module):
    """Returns fixed logits, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask):
        return self.logits + self.w


def _rows(ids, labels):
    return torch.stack([torch.as_tensor(ids), torch.as_tensor(labels)], 1)


def test_sequence_head_is_cross_entropy_over_classes():
    logits = torch.randn(3, 4)
    batch = _rows(torch.ones(3, 5, dtype=torch.long), [[2, -100, -100, -100, -100], [0] + [-100] * 4, [3] + [-100] * 4])
    loss, m = Finetune(Fixed(logits), pad_id=0)(batch, None)
    y = torch.tensor([2, 0, 3])
    assert torch.allclose(loss, F.cross_entropy(logits, y))
    assert m["acc"] == (logits.argmax(1) == y).float().mean()


def test_token_head_skips_unlabelled_tokens():
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[1, -100, 2, -100], [-100, 0, -100, -100]])
    loss, _ = Finetune(Fixed(logits), pad_id=0, per_token=True)(_rows(torch.ones(2, 4, dtype=torch.long), labels), None)
    keep = labels != -100
    assert torch.allclose(loss, F.cross_entropy(logits[keep], labels[keep]))


def test_mlm_head_trains_the_answer_token_over_the_vocabulary_and_predicts_among_answers():
    V, answers = 10, torch.tensor([7, 3])
    logits = torch.zeros(2, 3, V)
    logits[0, 2, 9] = 5.0  # the best token overall is no answer ...
    logits[0, 2, 3] = 1.0  # ... but among the answers class 1 wins
    logits[1, 1, 7] = 2.0
    labels = torch.tensor([[-100, -100, 1], [-100, 0, -100]])
    loss, m = Finetune(Fixed(logits), pad_id=0, answer_ids=answers)(
        _rows(torch.ones(2, 3, dtype=torch.long), labels), None
    )
    slot = torch.stack([logits[0, 2], logits[1, 1]])
    assert torch.allclose(loss, F.cross_entropy(slot, torch.tensor([3, 7])))  # full-vocabulary CE, answer tokens
    assert m["acc"] == 1.0


def test_the_template_keeps_its_mask_whatever_the_text_length():
    from masklab.data.tokenizers import byte_tokenizer

    tok = byte_tokenizer()
    rows = _encode_texts(tok, ["x" * 500, "short"], [1, 0], 48, "\nAnswer: " + tok.mask_token)
    for row, y in zip(rows, (1, 0), strict=True):
        slot = (row[1] != -100).nonzero().flatten().tolist()
        assert len(slot) == 1 and row[0, slot[0]] == tok.mask_token_id and row[1, slot[0]] == y


GROUPS = [("1100", 8, [0, 1, 2, 3]), ("0011", 4, [2, 3]), ("0000", 4, []), ("1111", 4, [0, 1, 2, 3]),
          ("0-1,3", 4, [0, 1, 3]), ("", 4, [])]  # fmt: skip


@pytest.mark.parametrize("spec, n, expected", GROUPS)
def test_layer_groups(spec, n, expected):
    assert layer_indices(spec, n) == expected


@pytest.mark.parametrize("spec, n", [("110", 8), ("5", 4)])
def test_bad_layer_groups(spec, n):
    with pytest.raises(ValueError, match="layers"):
        layer_indices(spec, n)


def test_roles_on_a_causal_model_make_the_chosen_layers_bidirectional(one_thread):
    r = apply_overrides(get_recipe("finetune"), ["task=roles", "arch=llama", "layers=10", "train_examples=64"])
    task = r.build()
    masks = layer_masks(task.objective.model)
    assert masks[0] is not None and masks[1] is None  # layer 0 bidirectional, layer 1 keeps its causal mask
    assert task.train.shape[1:] == (2, r.seq_len) and set(task.train[:, 1].unique().tolist()) <= {-100, 0, 1, 2}


@pytest.mark.parametrize("bad, match", [(["classifier=mlm", "task=roles"], "labels tokens"),
                                        (["layers=1100"], "encoder"), (["task=poems"], "task must be")])  # fmt: skip
def test_bad_recipes(bad, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(get_recipe("finetune"), bad).build()


@pytest.mark.slow
def test_a_short_fine_tune_beats_chance(tmp_path, one_thread):
    from masklab.train.loop import train

    r = apply_overrides(get_recipe("finetune"), ["task=keyword", "steps=60", "lr=2e-3", "train_examples=480"])
    summary = train(r, tmp_path / "ft", progress=False)
    assert summary["eval"]["acc"] > 1.5 / 8  # 8 balanced classes


@pytest.mark.slow
def test_lora_trains_the_fresh_head_and_resumes_exactly(tmp_path, one_thread):
    from safetensors.torch import load_file

    from masklab.train.loop import train

    base = ["task=roles", "arch=llama", "preset=micro", "train_examples=64", "lora=4", "steps=4", "lr=1e-2"]
    r = apply_overrides(get_recipe("finetune"), base)
    train(r, tmp_path / "whole", progress=False)
    train(r, tmp_path / "split", progress=False, stop_at=2)
    train(r, tmp_path / "split", progress=False, resume=True)
    whole, split = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("whole", "split"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
    fresh = r.build().objective.model  # LoRA-wrapped, the head at its initial value
    head = fresh.base_model.model.score.original_module.weight
    assert not torch.equal(whole["score.weight"], head)  # the head trained beside the adapters
