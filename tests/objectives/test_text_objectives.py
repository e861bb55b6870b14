"""MDM, MLM and AR losses against exact values for models whose predictions are known."""

import math

import torch
from torch import nn

from masklab.corrupt import keyed
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.objectives.ar import AR
from masklab.objectives.mdm import MDM
from masklab.objectives.mlm import MLM

INFO = token_info(byte_tokenizer())


class Uniform(nn.Module):
    """Predicts the uniform distribution over the vocabulary: cross-entropy log V at every position."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        return torch.zeros(*input_ids.shape, INFO.vocab_size) + 0 * self.w


def test_mdm_bound_of_uniform_model_is_log_v():
    obj = MDM(Uniform(), INFO)
    ids = torch.randint(5, 261, (4000, 32))
    loss, m = obj(ids, keyed.example_keys(0, 0, torch.arange(4000)))
    assert abs(loss.item() / math.log(261) - 1) < 0.03
    assert abs(m["masked_ce"].item() - math.log(261)) < 1e-4
    ev = obj.evaluate(ids[:512], batch_size=64)
    assert abs(ev["nll_bound_bits"] / math.log2(261) - 1) < 0.05


def test_mlm_selects_15_percent_and_scores_log_v():
    obj = MLM(Uniform(), INFO)
    ids = torch.randint(5, 261, (256, 128))
    loss, m = obj(ids, keyed.example_keys(0, 0, torch.arange(256)))
    assert abs(loss.item() - math.log(261)) < 1e-4


def test_ar_shifts_targets():
    class Copy(nn.Module):  # puts all mass on the current token: right only if the next token repeats it
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, input_ids):
            return 50.0 * nn.functional.one_hot(input_ids, INFO.vocab_size).float() + 0 * self.w

    repeated = torch.full((2, 16), 7)
    loss, _ = AR(Copy(), INFO)(repeated, torch.arange(2))
    assert loss.item() < 1e-6
    loss2, _ = AR(Copy(), INFO)(torch.arange(10, 26).repeat(2, 1), torch.arange(2))
    assert loss2.item() > 40
