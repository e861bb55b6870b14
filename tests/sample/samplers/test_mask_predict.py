"""Mask-Predict (Ghazvininejad et al. 2019, Sec. 3.2) on the exact HMM denoiser: its mask schedule and its choice.

- Iteration t sees n = floor(N (T - t) / T) masks (N at t = 0), T model calls per block.
- The masks put back at iteration t are the n committed tokens of lowest probability, each token's probability being
  the one from the iteration that last predicted it (greedy decoding, as the paper).
"""

import pytest
import torch

from masklab.data.synthetic import RandomHMM
from masklab.sample import generate
from masklab.sample.samplers.mask_predict import mask_counts

pytestmark = pytest.mark.usefixtures("one_thread")

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK = HMM.mask_id


class Recorder:
    """The HMM denoiser on every row (``every_row``), keeping each input and its logits."""

    every_row = True

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        out = HMM(x)
        self.calls.append((x.clone(), out))
        return out


@pytest.mark.parametrize("N,T", [(16, 5), (16, 16), (7, 3), (9, 1)])
def test_the_mask_count_decays_linearly(N, T):
    model = Recorder()
    x = torch.full((3, N + 2), MASK)
    x[:, :2] = 4  # a prompt
    generate(model, x, mask_id=MASK, sampler="mask_predict", steps=T, seed=[1, 2, 3])
    seen = [int((xs[0] == MASK).sum()) for xs, _ in model.calls]
    assert seen == [N] + [N * (T - t) // T for t in range(1, T)]  # n = N (T - t) / T, floored
    assert seen == [int(mask_counts(torch.tensor([N]), torch.tensor([T]), t)) for t in range(T)]


def test_each_block_costs_T_calls_whatever_its_length():
    x = torch.full((2, 21), MASK)
    x[:, 0] = 1
    g = generate(HMM, x, mask_id=MASK, sampler="mask_predict", steps=12, block_length=8, return_order=True, seed=0)
    assert g.nfe == 12 and not (g.ids == MASK).any()  # 3 blocks of 8, 8, 4 masks: 4 iterations each


def test_the_least_sure_tokens_are_masked_again():
    model = Recorder()
    x = torch.full((4, 20), MASK)
    generate(model, x, mask_id=MASK, sampler="mask_predict", steps=6, temperature=0.0, seed=0)
    prob = torch.zeros(4, 20, dtype=torch.float64)  # probability of each position's token when last predicted
    for (before, logits), (after, _) in zip(model.calls[:-1], model.calls[1:], strict=True):
        predicted = before == MASK
        best = logits.double().softmax(-1).max(-1).values  # greedy: the token is the argmax
        prob = torch.where(predicted, best, prob)
        n = (after == MASK).sum(1, keepdim=True)  # (B, 1)
        lowest = prob.argsort(dim=1, stable=True).argsort(dim=1) < n
        assert torch.equal(after == MASK, lowest)
