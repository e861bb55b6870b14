"""The synthetic ground truth: the HMM's forward likelihood and its exact denoiser."""

import itertools

import torch

from masklab.data.synthetic import RandomHMM, TableJoint


def test_hmm_likelihood_sums_to_one_and_denoiser_is_bayes():
    hmm = RandomHMM(states=3, symbols=4, seed=2, alpha=0.5)
    seqs = torch.tensor(list(itertools.product(range(4), repeat=4)))
    assert abs(float(hmm.log_prob(seqs).exp().sum()) - 1.0) < 1e-9
    # p(x_i | observed) = p(x) / p(x with i masked), for several masks at once
    x = hmm.sample(5, 7, seed=0)
    xm = x.clone()
    xm[:, [1, 4, 5]] = hmm.mask_id
    cond = hmm(xm).double()
    x2 = xm.clone()
    x2[:, 4] = x[:, 4]
    want = hmm.log_prob(x2) - hmm.log_prob(xm)
    assert torch.allclose(cond[torch.arange(5), 4, x[:, 4]], want, atol=1e-5)


def test_hmm_samples_follow_its_likelihood():
    """Mean log-likelihood of samples = -entropy; check against the exact entropy by enumeration."""
    hmm = RandomHMM(states=2, symbols=3, seed=1, alpha=0.5)
    seqs = torch.tensor(list(itertools.product(range(3), repeat=5)))
    lp = hmm.log_prob(seqs)
    entropy = float(-(lp.exp() * lp).sum())
    x = hmm.sample(20000, 5, seed=3)
    assert abs(float(-hmm.log_prob(x).mean()) - entropy) < 0.05


def test_table_joint_conditionals_are_exact():
    tj = TableJoint.random(3, 3, seed=0)
    p = tj.probs.view(3, 3, 3)
    x = torch.tensor([[1, 3, 3]])
    got = tj(x)[0, 1].double().exp()
    want = p[1].sum(1) / p[1].sum()
    assert torch.allclose(got, want, atol=1e-6)
