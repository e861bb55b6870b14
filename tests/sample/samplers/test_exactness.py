"""Samplers on an exact toy model: a known joint over short sequences whose conditionals are computed exactly.

One token per step from the model's exact conditionals in any order (FHS, confidence with random order)
samples the joint exactly (chain rule); MDLM's ancestral sampler does too as its steps grow (Zheng et al.
2024, Prop. 4.1). Committing k > 1 tokens per step draws them independently given the rest, i.e. from the
product of their conditionals, which departs from a correlated joint (Fast-dLLM, Wu et al. 2025, Sec. 3.3).
"""

import pytest
import torch
from scipy.stats import chisquare

from masklab.data.synthetic import TableJoint
from masklab.sample import SAMPLER, generate

V, L, N = 3, 3, 6000


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def joint():
    return TableJoint.random(V, L, seed=3, sharpness=1.5)


def _pvalue(joint, ids):
    counts = torch.bincount(joint.index(ids), minlength=V**L).double()
    return _chi2(counts, joint.probs)


def _chi2(counts, probs):
    expected = probs / probs.sum() * counts.sum()
    return chisquare(counts.numpy(), expected.numpy()).pvalue


def _sample(joint, sampler, **kw):
    x = torch.full((N, L), joint.mask_id)
    return generate(joint, x, mask_id=joint.mask_id, sampler=sampler, seed=list(range(N)), **kw)


ONE_TOKEN_PER_STEP = [
    ("fhs", {}),
    ("confidence", {"remasking": "random"}),  # steps default: one token per step
    ("ancestral", {"steps": 128}),
    # ReMDM keeps MDLM's marginals (Wang et al. 2025, Eq. 7); with eta 0.02 a step masks again ~2% of the revealed
    # tokens, so moves stay nearly one at a time and, as ancestral, it approaches the joint with many steps
    ("remdm", {"steps": 128}),
]
PARALLEL = [
    ("confidence", {"remasking": "random", "steps": 1}),  # all three tokens in one step
    ("confidence", {"remasking": "random", "steps": 2}),  # two, then one
    ("threshold", {"threshold": 0.0}),  # commits every position whose confidence exceeds 0: all at once
    ("ancestral", {"steps": 1}),  # one time step: every token revealed together
    ("remdm", {"steps": 1}),  # the same single step (nothing is revealed yet, so nothing is masked again)
    ("mask_predict", {"steps": 1}),  # one iteration: every token predicted at once and none masked again
    ("mask_predict", {"steps": 3}),  # then 2, then 1 of the least sure predicted again, the 2 together
]


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_every_sampler_is_checked_against_the_joint(sampler):
    """A newly registered sampler needs a row below: one token per step, parallel, or both."""
    assert sampler in {name for name, _ in ONE_TOKEN_PER_STEP + PARALLEL}


@pytest.mark.parametrize("sampler,kw", ONE_TOKEN_PER_STEP)
def test_one_token_per_step_reproduces_joint(joint, sampler, kw):
    assert _pvalue(joint, _sample(joint, sampler, **kw)) > 1e-3


@pytest.mark.parametrize("sampler,kw", PARALLEL)
def test_parallel_decoding_departs_from_joint(joint, sampler, kw):
    assert _pvalue(joint, _sample(joint, sampler, **kw)) < 1e-6


def test_parallel_decoding_equals_product_of_marginals(joint):
    """Departure is the predicted one: one step samples the product of the single-site marginals."""
    ids = _sample(joint, "confidence", remasking="random", steps=1)
    marg = joint(torch.full((1, L), joint.mask_id))[0].double().exp()  # (L, V)
    prod = (marg[0][:, None, None] * marg[1][None, :, None] * marg[2][None, None, :]).flatten()
    counts = torch.bincount(joint.index(ids), minlength=V**L).double()
    assert _chi2(counts, prod) > 1e-3
