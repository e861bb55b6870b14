"""MEAP objective: next-token loss on the clean sequence with masked inputs; prob=0 is plain next-token LM."""

import torch
import torch.nn.functional as F

from masklab.corrupt import keyed
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.ar import AR
from masklab.objectives.meap import MEAP

INFO = TokenInfo(vocab_size=30, mask_id=1, pad_id=0, eos_id=2, bos_id=3, special_ids=(0, 1, 2, 3), never_mask=(0, 1, 3))


class Spy(torch.nn.Module):
    """A 'model' that records its input and returns fixed logits."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(30, 30))
        self.seen = None

    def forward(self, input_ids):
        self.seen = input_ids
        return self.w[input_ids]


def test_targets_are_clean_next_tokens_and_inputs_are_masked():
    spy = Spy()
    batch = torch.randint(4, 30, (8, 20))
    keys = keyed.example_keys(0, 0, range(8))
    loss, m = MEAP(spy, INFO, prob=0.2)(batch, keys)
    seen = spy.seen
    assert ((seen == 1).sum(1) == 4).all() and torch.equal(seen[seen != 1], batch[seen != 1])
    want = F.cross_entropy(spy.w[seen][:, :-1].flatten(0, 1), batch[:, 1:].flatten())
    assert torch.allclose(loss, want)
    clean_loss, _ = MEAP(spy, INFO, prob=0.0)(batch, keys)
    ar_loss, _ = AR(spy, INFO)(batch, keys)
    assert torch.allclose(clean_loss, ar_loss)
