"""The synthetic word trials are what their docstring says, exactly: x = signal + noise, a word's template on its
own channels only, at its onset, with its gains; the AR(1) background has the stated law; and fusing a word's
channels beats its best single channel for a matched filter that knows the templates."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.signals import AR_COEF, WordSignals


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 1000))
def test_each_trial_is_its_words_template_on_its_channels_plus_noise(world, draw):
    ws = WordSignals(seed=world % 1000)
    wave, gains = ws.templates()
    t = ws.trials(6, seed=draw)
    assert torch.equal(t.x, t.signal + t.noise)
    for i in range(6):
        w, o = int(t.labels[i]), int(t.onsets[i])
        want = np.zeros((ws.length, ws.channels))
        want[o : o + ws.burst] = wave[w][:, None] * gains[w][None, :]
        np.testing.assert_allclose(t.signal[i].numpy(), want, rtol=0, atol=1e-6)
        on = np.flatnonzero(gains[w])
        assert {ws.region_of(c) for c in on} == {w % ws.regions} and len(on) == ws.per_region
        assert abs(o - (ws.length - ws.burst) // 2) <= ws.jitter
    assert np.allclose(np.abs(wave).max(1), 1.0)


def test_scale_is_the_exact_standard_deviation_of_the_samples():
    for ws in (WordSignals(), WordSignals(noise=0.1, drift=0.05, seed=3)):
        x, _ = ws.sample(3000, seed=1, standardize=True)
        assert abs(x.pow(2).mean().item() - 1.0) < 0.02, ws


def test_trials_are_a_function_of_the_seeds():
    ws = WordSignals()
    a, b = ws.trials(5, seed=3), ws.trials(5, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.x, ws.trials(5, seed=4).x)
    assert not torch.equal(a.x, WordSignals(seed=1).trials(5, seed=3).x)


def test_background_is_a_stationary_ar1_of_the_stated_std():
    ws = WordSignals(noise=0.0, drift=1.0)
    b = ws.trials(2000, seed=0).noise.numpy()  # (n, T, C): the background alone
    assert abs(b.std() - 1.0) < 0.02
    lag1 = np.mean(b[:, 1:] * b[:, :-1]) / np.mean(b[:, :-1] ** 2)
    assert abs(lag1 - AR_COEF) < 0.01
    assert abs(b[:, 0].std() - b[:, -1].std()) < 0.05  # stationary from the first sample


def test_words_of_a_region_differ_only_in_the_signs_of_its_channels():
    ws = WordSignals()
    wave, gains = ws.templates()
    for r in range(ws.regions):
        words = [w for w in range(ws.words) if w % ws.regions == r]
        block = gains[words][:, r * ws.per_region : (r + 1) * ws.per_region]  # (words, p)
        assert np.allclose(np.abs(block), np.abs(block[0]))  # one magnitude per channel for all of them
        assert np.all(block[:, 0] * block[0, 0] > 0)  # the region's first channel: one sign for every word
        signs = np.sign(block)
        assert np.allclose(signs @ signs.T, ws.per_region * np.eye(len(words)))  # orthogonal sign patterns
        assert all(np.array_equal(wave[w], wave[words[0]]) for w in words)  # one response per region


def _matched_filter(ws, x, gains, wave, words):
    """The word among ``words`` of highest Gaussian log-likelihood at its best onset, for a filter that knows the
    gains and waveforms (``gains`` zeroed off the channels it may read)."""
    scores = np.full((len(x), len(words)), -np.inf)
    for j, w in enumerate(words):
        proj = x @ gains[w]  # (n, T): the channels fused with the word's gains
        energy = 0.5 * (wave[w] ** 2).sum() * (gains[w] ** 2).sum()
        for o in range(ws.length - ws.burst + 1):
            scores[:, j] = np.maximum(scores[:, j], proj[:, o : o + ws.burst] @ wave[w] - energy)
    return np.asarray(words)[scores.argmax(1)]


def test_a_regions_channels_together_name_the_word_and_no_single_channel_can():
    ws = WordSignals()
    wave, gains = ws.templates()
    t = ws.trials(600, seed=5)
    words = [0, 4, 8]  # region 0's three words
    keep = np.isin(t.labels.numpy(), words)
    x, y = t.x.numpy()[keep].astype(np.float64), t.labels.numpy()[keep]
    assert np.mean(_matched_filter(ws, x, gains, wave, words) == y) == 1.0
    for c in range(ws.per_region):
        one = np.zeros_like(gains)
        one[:, c] = gains[:, c]
        acc = np.mean(_matched_filter(ws, x, one, wave, words) == y)
        assert acc <= 2 / 3 + 0.05, (c, acc)  # one channel's signs split three words at most two ways


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"channels": 10, "regions": 4}, "regions dividing channels"),
        ({"words": 1}, "words >= 2"),
        ({"channels": 12, "regions": 4}, "power of 2"),
        ({"words": 13}, "at most regions"),
        ({"burst": 120}, "burst plus twice the jitter"),
        ({"noise": -1.0}, "noise and drift"),
    ],
)
def test_bad_worlds_are_one_line_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        WordSignals(**kwargs)
    with pytest.raises(ValueError, match="n must be >= 1"):
        WordSignals().trials(0, seed=0)
