"""Synthetic captioned motions: captions name the exact parameters, the motion follows its parameter equations, and
the least-squares reader recovers every parameter from the trajectory."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.motions import (
    ACTIONS,
    AMPLITUDES,
    DIRECTIONS,
    PHASES,
    REST,
    SPEEDS,
    TEMPLATES,
    WALK_STRIDE,
    MotionParams,
    all_params,
    caption,
    captions,
    parse_caption,
    recover_params,
    sample_motions,
    trajectory,
)


def test_every_caption_names_its_parameters_and_no_other():
    params = all_params()
    assert len(params) == len(ACTIONS) * len(DIRECTIONS) * len(SPEEDS) * len(AMPLITUDES) == 108
    texts = captions()
    assert len(set(texts)) == len(texts) == 108 * len(TEMPLATES)  # distinct: a caption fixes its combination
    for i, text in enumerate(texts):
        assert parse_caption(text) == params[i // len(TEMPLATES)]


def test_trajectory_follows_the_parameter_equations():
    """Read the equations off the joints: a walk drifts WALK_STRIDE x cycles along d over the clip; a jump's root
    and a wave's right hand reach a d at the swing's peak and rest at phase 0; other joints keep their rest place."""
    T = 48
    for p in all_params():
        x = trajectory(p, 0.0, T)  # (T, J, 2)
        d, a, c = np.array(DIRECTIONS[p.direction]), AMPLITUDES[p.amplitude], SPEEDS[p.speed]
        peak = int(round(T / (2 * c)))  # omega tau = pi: (1 - cos) / 2 = 1
        if p.action == "walk":
            np.testing.assert_allclose(x[:, 0] - x[0, 0], np.outer(np.arange(T) / T, d) * WALK_STRIDE * c, atol=1e-12)
            np.testing.assert_allclose(x[:, :4] - x[:, :1], np.broadcast_to(REST[:4], (T, 4, 2)), atol=1e-12)
        elif p.action == "jump":
            np.testing.assert_allclose(x[0], REST, atol=1e-12)
            np.testing.assert_allclose(x[peak], REST + a * d, atol=1e-12)
        else:
            np.testing.assert_allclose(x[peak, 3], REST[3] + a * d, atol=1e-12)
            np.testing.assert_allclose(np.delete(x, 3, axis=1), np.broadcast_to(np.delete(REST, 3, 0), (T, 4, 2)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 107), st.floats(0, 2 * math.pi), st.sampled_from([0.0, 0.02, 0.05]))
def test_recover_params_reads_back_every_combination(combo, phase, noise):
    """The reader is exact on any phase (not only its grid's) and under the data's noise."""
    x = trajectory(all_params()[combo], phase)
    x = x + noise * np.random.default_rng(combo).standard_normal(x.shape)
    assert int(recover_params(torch.from_numpy(x)[None])[0]) == combo


def test_sample_motions_is_seeded_and_labels_are_exact():
    a, b = sample_motions(300, seed=3, noise=0.0), sample_motions(300, seed=3, noise=0.0)
    assert torch.equal(a.joints, b.joints) and torch.equal(a.caption_id, b.caption_id)
    assert not torch.equal(a.joints, sample_motions(300, seed=4, noise=0.0).joints)
    params = all_params()
    for i in range(0, 300, 37):  # each row is its combination's trajectory at its phase
        want = trajectory(params[int(a.combo[i])], float(a.phase[i]))
        np.testing.assert_allclose(a.joints[i].numpy(), want, atol=1e-6)
        assert parse_caption(captions()[int(a.caption_id[i])]) == params[int(a.combo[i])]
    fixed = sample_motions(108, seed=0, combos=np.arange(108))
    assert torch.equal(fixed.combo, torch.arange(108))
    assert PHASES >= 8


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: MotionParams("run", "left", "slowly", "small"), "action"),
        (lambda: caption(all_params()[0], template=5), "template"),
        (lambda: parse_caption("a person dances"), "names no single action"),
        (lambda: sample_motions(0, seed=0), "n >= 1"),
        (lambda: sample_motions(2, seed=0, combos=np.array([0, 200])), "combos"),
        (lambda: recover_params(torch.zeros(2, 32, 3, 2)), "joints must be"),
    ],
)
def test_bad_input_is_one_clear_error(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
