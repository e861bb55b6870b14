"""Frame span masks against the Hugging Face wav2vec2 oracle, plus the extensions (lengths, no_overlap,
same_count)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from masklab.corrupt import _select, keyed
from masklab.corrupt._backend import use_backend
from masklab.corrupt.frames import ask2mask, span_lengths, span_mask


def _runs(mask):
    """Lengths of maximal masked runs, all rows pooled."""
    m = np.asarray(mask, dtype=np.int8)
    d = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)
    return np.flatnonzero(d.ravel() == -1) - np.flatnonzero(d.ravel() == 1)


def _hf(shape, p, M, reps, attention_mask=None):
    np.random.seed(0)
    return np.concatenate([_compute_mask_indices(shape, p, M, attention_mask=attention_mask) for _ in range(reps)])


@pytest.mark.parametrize("p, M", [(0.65, 10), (0.05, 10), (0.3, 3), (0.5, 1)])
def test_matches_hf_masked_fraction_and_run_length_distribution(p, M):
    hf = _hf((64, 200), p, M, 40)
    ours = span_mask((2560, 200), p, M, seed=0).numpy()
    assert ours.mean() == pytest.approx(hf.mean(), abs=0.01)
    # distribution of masked run lengths (overlapping spans merge into longer runs in both)
    bins = np.arange(1, 4 * M + 2)
    h1 = np.histogram(_runs(hf), bins)[0] / len(_runs(hf))
    h2 = np.histogram(_runs(ours), bins)[0] / len(_runs(ours))
    assert np.abs(h1 - h2).sum() < 0.06  # total variation distance x2
    # per-row masked count: same mean and spread
    assert ours.sum(1).std() == pytest.approx(hf.sum(1).std(), rel=0.15, abs=1.0)


def test_matches_hf_with_padding():
    lengths = np.array([200, 150, 80, 33] * 16)
    att = torch.tensor(np.arange(200)[None] < lengths[:, None]).long()
    hf = _hf((64, 200), 0.4, 5, 30, attention_mask=att)
    ours = span_mask((64 * 30, 200), 0.4, 5, lengths=np.tile(lengths, 30), seed=1).numpy()
    for i, n in enumerate([200, 150, 80, 33]):
        a, b = hf[i::4], ours[i::4]
        assert not b[:, n:].any()
        assert b[:, :n].mean() == pytest.approx(a[:, :n].mean(), abs=0.02)


def test_spans_have_exact_length_when_no_overlap():
    m = span_mask((500, 300), 0.5, 7, no_overlap=True, min_space=3, seed=2).numpy()
    runs = _runs(m)
    assert set(runs.tolist()) == {7}  # every span intact, none merged: gaps of >= 3 frames
    gaps = np.diff(np.flatnonzero(np.diff(np.pad(m[0].astype(np.int8), 1))))[1::2]
    assert (gaps >= 3).all()
    # stars and bars places spans uniformly: away from the ends every frame is about equally likely to be
    # masked
    sparse = span_mask((3000, 300), 0.1, 7, no_overlap=True, min_space=3, seed=2).numpy()
    freq = sparse[:, 20:280].mean(0)
    assert abs(freq.mean() - 0.1) < 0.01 and freq.min() > 0.07 and freq.max() < 0.13


@pytest.mark.parametrize("mask_type", ["static", "uniform", "normal", "poisson"])
def test_same_count_equalizes_rows_without_fragmenting(mask_type):
    lengths = torch.tensor([300, 280, 250, 300] * 50)
    m = span_mask((200, 300), 0.4, 8, lengths=lengths, mask_type=mask_type, mask_other=2, same_count=True, seed=3)
    counts = m.sum(1)
    assert bool((counts == counts[0]).all()) and int(counts[0]) > 0
    free = span_mask((200, 300), 0.4, 8, lengths=lengths, mask_type=mask_type, mask_other=2, seed=3)
    assert not bool((m & ~free).any())  # only removes frames
    # not fragmenting: every run of the result is a contiguous part of one run of the original, and each
    # original run loses frames only from its end, so the number of runs never grows
    assert len(_runs(m.numpy())) <= len(_runs(free.numpy()))
    starts_new = m & ~torch.nn.functional.pad(m, (1, 0))[:, :-1]
    starts_old = free & ~torch.nn.functional.pad(free, (1, 0))[:, :-1]
    assert not bool((starts_new & ~starts_old).any())


def test_span_length_distributions_follow_fairseq():
    keys = keyed.example_keys(0, 0, torch.arange(20000))
    u, u2 = keyed.uniform(keys, 1, 1)[:, 0], keyed.uniform(keys, 1, 2)[:, 0]
    uni = span_lengths(u, u2, "uniform", 5, 2).numpy()
    assert uni.min() == 2 and uni.max() == 10 and uni.mean() == pytest.approx(6, abs=0.1)
    norm = span_lengths(u, u2, "normal", 10, 3).numpy()
    assert norm.mean() == pytest.approx(10, abs=0.1) and norm.std() == pytest.approx(3, abs=0.1)
    poi = span_lengths(u, u2, "poisson", 4, 0).numpy()
    assert poi.mean() == pytest.approx(4, abs=0.06) and poi.var() == pytest.approx(4, abs=0.2)
    # chi-square against the exact Poisson(4) pmf over 0..11 (and the tail); 12 dof, 99.9% quantile 32.9
    pmf = np.array([math.exp(-4) * 4**k / math.factorial(k) for k in range(12)])
    obs = np.bincount(poi, minlength=20)[:12]
    expected = np.append(pmf, 1 - pmf.sum()) * poi.size
    observed = np.append(obs, poi.size - obs.sum())
    assert ((observed - expected) ** 2 / expected).sum() < 32.9


def test_keyed_rows_do_not_depend_on_the_batch():
    keys = keyed.example_keys(1, 4, torch.tensor([7, 8, 9]))
    a = span_mask((3, 100), 0.5, 4, keys=keys)
    b = span_mask((2, 100), 0.5, 4, keys=keys[1:])
    assert torch.equal(a[1:], b)


def test_min_masks_and_probabilistic_rounding():
    m = span_mask((4000, 50), 0.0, 5, min_masks=2, seed=0).numpy()
    assert (m.sum(1) >= 5).all()  # two distinct starts mask at least one span
    m = span_mask((4000, 100), 0.13, 10, seed=0).numpy()  # 1.3 spans on average
    starts = (np.diff(np.pad(m.astype(np.int8), ((0, 0), (1, 0))), axis=1) == 1).sum(1)
    assert set(np.unique(starts)) <= {1, 2}


def test_ask2mask_prefers_confident_frames_and_weights_utterances():
    conf = torch.full((400, 200), 0.05)
    conf[:, 100:] = 0.95
    conf[200:] *= 0.5
    fm = ask2mask(conf, 0.2, 5, temperature=0.5, seed=0)
    m = fm.mask.float()
    assert m[:, 100:].mean() > 5 * m[:, :96].mean()  # starts land where the scorer is confident
    # Ask2Mask's utterance score: the mean frame confidence (0.5 for the first half, 0.25 for the second)
    assert torch.allclose(fm.weights, conf.double().mean(1).float())
    flat = ask2mask(conf, 0.2, 5, temperature=1e6, seed=0).mask.float()  # hot: uniform like span_mask
    assert abs(float(flat[:, 100:].mean() - flat[:, :96].mean())) < 0.02


def test_ask2mask_weight_of_an_utterance_does_not_depend_on_its_batch():
    """An utterance's loss weight is its own score over a fixed reference: the same alone, in any batch, padded or
    not (dividing by the batch mean made it change with the other utterances of the batch)."""
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(6, 50, generator=g)
    lengths = torch.tensor([50, 40, 50, 20, 50, 33])
    keys = keyed.example_keys(0, 0, torch.arange(6))
    together = ask2mask(conf, 0.3, 4, lengths=lengths, keys=keys, weight_reference=0.5)
    for i in range(6):
        alone = ask2mask(
            conf[i : i + 1], 0.3, 4, lengths=lengths[i : i + 1], keys=keys[i : i + 1], weight_reference=0.5
        )
        assert torch.equal(alone.weights, together.weights[i : i + 1])
        assert torch.equal(alone.mask, together.mask[i : i + 1])
        want = conf[i, : lengths[i]].double().mean() / 0.5
        assert float(together.weights[i]) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="weight_reference"):
        ask2mask(conf, 0.3, 4, keys=keys, weight_reference=0.0)


def _chi_square(observed: np.ndarray, expected_p: np.ndarray) -> float:
    expected = expected_p * observed.sum()
    return float(((observed - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_ask2mask_one_start_follows_confidence_power_exactly(temperature):
    """One span of one frame per row: the start is frame t with probability c_t^(1/temperature) / sum_s c_s^(1/
    temperature). Chi-square over 12 frames (11 dof), 99.9% quantile 31.26."""
    c = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0])
    B, T = 20000, len(c)
    fm = ask2mask(
        c.expand(B, T), 0.0, 1, min_masks=1, temperature=temperature, keys=keyed.example_keys(5, 0, torch.arange(B))
    )
    assert (fm.mask.sum(1) == 1).all()
    observed = np.bincount(fm.mask.float().argmax(1).numpy(), minlength=T)
    w = c.double().numpy() ** (1 / temperature)
    assert _chi_square(observed, w / w.sum()) < 31.26


def test_ask2mask_two_starts_follow_sampling_without_replacement_exactly():
    """Two distinct starts per row are a weighted draw without replacement: P({i, j}) = w_i/W w_j/(W - w_i) +
    w_j/W w_i/(W - w_j). Chi-square over the 15 pairs of 6 frames (14 dof), 99.9% quantile 36.12."""
    c = torch.tensor([0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    B, T = 20000, len(c)
    fm = ask2mask(c.expand(B, T), 0.0, 1, min_masks=2, keys=keyed.example_keys(6, 0, torch.arange(B)))
    assert (fm.mask.sum(1) == 2).all()
    pairs = [(i, j) for i in range(T) for j in range(i + 1, T)]
    code = {p: k for k, p in enumerate(pairs)}
    idx = fm.mask.nonzero()[:, 1].view(B, 2).tolist()
    observed = np.bincount([code[tuple(r)] for r in idx], minlength=len(pairs))
    w = c.double().numpy()
    W = w.sum()
    exact = np.array([w[i] / W * w[j] / (W - w[i]) + w[j] / W * w[i] / (W - w[j]) for i, j in pairs])
    assert exact.sum() == pytest.approx(1.0)
    assert _chi_square(observed, exact) < 36.12


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mask_prob=1.2), "mask_prob must be in"),
        (dict(mask_prob=-0.1), "mask_prob must be in"),
        (dict(mask_length=101), "mask_length 101 is longer than the sequence"),
        (dict(mask_length=0), "mask_length must be >= 1"),
        (dict(lengths=[120, 5]), "lengths must be"),
        (dict(mask_type="gamma"), "unknown mask_type 'gamma'"),
    ],
)
def test_bad_inputs_raise(kw, match):
    args = dict(mask_prob=0.5, mask_length=5) | kw
    with pytest.raises(ValueError, match=match):
        span_mask((2, 100), args.pop("mask_prob"), args.pop("mask_length"), seed=0, **args)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(12, 300),
    st.floats(0.0, 1.0),
    st.integers(1, 40),
    st.integers(0, 4),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_cpu_numpy_path_equals_the_torch_path(B, T, p, M, min_masks, padded, same_count, seed):
    """The wav2vec2 default runs in numpy on the CPU; other devices run the torch code: same keyed draws, same
    mask (ties between 32-bit start scores aside, about one row in 10**7)."""
    M = min(M, T)
    lengths = torch.randint(0, T + 1, (B,), generator=torch.Generator().manual_seed(seed)) if padded else None
    kw = dict(lengths=lengths, min_masks=min_masks, same_count=same_count, seed=seed)
    with use_backend("numpy"):
        fast = span_mask((B, T), p, M, **kw)
    with use_backend("torch"):
        slow = span_mask((B, T), p, M, **kw)
    assert torch.equal(fast, slow)


def test_smallest_breaks_ties_by_index_as_on_every_device():
    """Span starts are the n smallest 24-bit keyed uniforms; equal draws must fall to the lower index (topk
    orders ties differently on CPU and CUDA, which paired a span with another length on the GPU)."""
    score = torch.tensor([[0.5, 0.25, 0.25, 0.75, 0.25], [1.0, 0.0, 1.0, 0.0, 0.0]])
    assert _select.smallest_indices(score, 3).tolist() == [[1, 2, 4], [1, 3, 4]]
    assert _select.smallest_indices(score, 5).tolist() == [[1, 2, 4, 0, 3], [1, 3, 4, 0, 2]]
