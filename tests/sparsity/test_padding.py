"""Padding is not calibration data: Wanda's norms, SparseGPT's Hessian and MaskLLM's distillation loss must not
change when a batch is padded (issue: 66% padding moved 7.2% of Wanda's mask entries on MiniLM)."""

import torch
from transformers import BertConfig, BertForMaskedLM

from masklab.sparsity import sparsify_
from masklab.sparsity.apply import select_layers
from masklab.sparsity.learnable import distill_loss_fn
from masklab.sparsity.scores import collect_input_stats

LENGTHS = (12, 5, 3)  # heavy padding: 20 of 36 positions are real


def _bert():
    torch.manual_seed(0)  # weight init of the toy model only
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    return BertForMaskedLM(cfg).eval()


def _examples():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, 64, (n,), generator=g) for n in LENGTHS]


def _padded(examples, pad_id=0, g=None):
    L = max(len(e) for e in examples)
    ids = torch.full((len(examples), L), pad_id)
    mask = torch.zeros(len(examples), L, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e)], mask[i, : len(e)] = e, 1
        if g is not None:  # arbitrary tokens where the mask says padding
            ids[i, len(e) :] = torch.randint(1, 64, (L - len(e),), generator=g)
    return {"input_ids": ids, "attention_mask": mask}


def _unpadded(examples):
    return [{"input_ids": e[None], "attention_mask": torch.ones(1, len(e), dtype=torch.long)} for e in examples]


def test_calibration_statistics_equal_those_of_the_unpadded_examples():
    model = _bert()
    layers = select_layers(model)
    padded = collect_input_stats(model, layers, _padded(_examples()), hessian=True)
    alone = collect_input_stats(model, layers, _unpadded(_examples()), hessian=True)
    for name in layers:
        assert padded[name].count == alone[name].count == sum(LENGTHS)
        torch.testing.assert_close(padded[name].sq_sum, alone[name].sq_sum, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(padded[name].hessian, alone[name].hessian, rtol=1e-4, atol=1e-5)


def test_wanda_and_sparsegpt_masks_ignore_what_sits_under_padding():
    for method in ("wanda", "sparsegpt"):
        masks = []
        for g in (None, torch.Generator().manual_seed(2)):
            model = _bert()
            masks.append(sparsify_(model, method, 2, 4, calib=_padded(_examples(), g=g)).masks)
        assert masks[0].keys() == masks[1].keys()
        for name in masks[0]:
            assert torch.equal(masks[0][name], masks[1][name]), (method, name)


def test_distillation_loss_ignores_padding_positions():
    teacher, student = _bert(), _bert()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss_fn = distill_loss_fn(teacher)
    a = loss_fn(student, _padded(_examples()))
    b = loss_fn(student, _padded(_examples(), g=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the mean is over real tokens only: equal to the token-weighted mean over the unpadded examples
    per = [loss_fn(student, b1) * len(e) for b1, e in zip(_unpadded(_examples()), _examples(), strict=True)]
    torch.testing.assert_close(a, sum(per) / sum(LENGTHS), rtol=1e-4, atol=1e-7)
