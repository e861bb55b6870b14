"""Evaluation metrics against closed forms."""

import math

import torch

from masklab.data.synthetic import RandomHMM
from masklab.sample.evaluate import gen_ppl, true_nll, unigram_entropy


def test_unigram_entropy_of_a_uniform_histogram():
    assert math.isclose(unigram_entropy(torch.arange(16).repeat(3)), 4.0)
    assert math.isclose(unigram_entropy(torch.tensor([0, 0, 1, 1, 9, 9]), ignore_ids=(9,)), 1.0)


def test_gen_ppl_of_a_uniform_causal_model_is_the_vocab_size():
    ids = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(0))
    assert math.isclose(gen_ppl(lambda x: torch.zeros(x.shape + (50,)), ids), 50.0, rel_tol=1e-5)


def test_true_nll_of_a_one_state_hmm_is_the_emission_code_length():
    hmm = RandomHMM(1, 5, seed=0)  # one state: i.i.d. symbols
    x = hmm.sample(4, 6, seed=0)
    want = float(-hmm.emit[0][x].log2().sum(1).mean()) / 6
    assert math.isclose(true_nll(hmm, x), want, rel_tol=1e-9)
