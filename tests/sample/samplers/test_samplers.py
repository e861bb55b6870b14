"""Every registered sampler: batch invariance, blocks, EOS stopping, CFG, bad logits; then each one's own rule."""

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.data.synthetic import RandomHMM
from masklab.sample import SAMPLER, generate
from masklab.sample.categorical import categorical, filter_logits
from masklab.sample.generate import batch_prompts
from masklab.sample.samplers._decode import Decoder

pytestmark = pytest.mark.usefixtures("one_thread")

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK, PAD = HMM.mask_id, 99


class PaddedHMM:
    """The exact HMM denoiser on rows right-padded with PAD: a trailing pad is an unobserved position, which
    the forward-backward pass marginalises out exactly, so a row's conditionals do not depend on its
    padding."""

    def __call__(self, x):
        return HMM(x.masked_fill(x == PAD, MASK))


def _prompts():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 12, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (8,), generator=g)]


OPTIONS = [{}, {"block_length": 4}, {"cfg_scale": 1.5}, {"eos_id": 3, "fill_id": 0}]


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_sampler_has_the_one_signature_and_a_summary(sampler):
    entry = SAMPLER[sampler]
    params = inspect.signature(entry.fn).parameters
    assert list(params)[:2] == ["model_fn", "x"]
    assert params["mask_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["steps"].kind is inspect.Parameter.KEYWORD_ONLY
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # the Decoder's options
    assert entry.summary and "\n" not in entry.summary


@pytest.mark.parametrize("sampler", SAMPLER.names())
@pytest.mark.parametrize("options", OPTIONS, ids=["plain", "blocks", "cfg", "eos"])
def test_row_output_does_not_depend_on_its_batch(sampler, options):
    """Same seed and prompt: the same ids alone and in a batch of 8 prompts of other lengths (exact model)."""
    prompts = _prompts()
    seeds = list(range(100, 108))
    batch = batch_prompts(prompts, 10, mask_id=MASK, pad_id=PAD)
    kw = dict(mask_id=MASK, sampler=sampler, pad_id=PAD, **options)
    together = generate(PaddedHMM(), batch, seed=seeds, **kw)
    for r in (0, 5):
        alone = generate(PaddedHMM(), batch_prompts([prompts[r]], 10, mask_id=MASK, pad_id=PAD), seed=[seeds[r]], **kw)
        assert torch.equal(alone[0], together[r, : alone.shape[1]])
        assert (together[r, alone.shape[1] :] == PAD).all()


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_blocks_are_revealed_in_order(sampler):
    x = torch.full((3, 13), MASK)
    x[:, :1] = 0
    g = generate(HMM, x, mask_id=MASK, sampler=sampler, block_length=4, return_order=True, seed=7)
    o = g.order[:, 1:]
    for b in range(2):
        assert o[:, 4 * b : 4 * b + 4].max(1).values.lt(o[:, 4 * b + 4 :].min(1).values).all(), sampler


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_nan_logits_name_the_step(sampler):
    calls = []

    def bad(x):
        calls.append(1)
        out = torch.zeros(x.shape + (4,))
        if len(calls) == 3:
            out[0, :, 2] = float("nan")
        return out

    with pytest.raises(ValueError, match="NaN or inf logits at step 2"):
        extra = {"threshold": 1.0} if sampler == "threshold" else {}
        generate(bad, torch.full((1, 12), 3), mask_id=3, sampler=sampler, steps=12, **extra)


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_a_model_with_wrong_shaped_logits_is_refused_by_name(sampler):
    x = torch.full((2, 4), MASK)
    wrong = {
        "missing the vocabulary axis": lambda ids: torch.zeros(ids.shape),
        "a different length": lambda ids: torch.zeros(ids.shape[0], ids.shape[1] + 1, 5),
        "integer logits": lambda ids: torch.zeros(ids.shape + (5,), dtype=torch.long),
        "not a tensor": lambda ids: [0.0],
    }
    for fn in wrong.values():
        with pytest.raises(ValueError, match=r"model returned logits of (shape|dtype)"):
            generate(fn, x, mask_id=MASK, sampler=sampler)


def test_bad_logits_count_only_at_masked_positions():
    """NaN or inf logits matter where a token is drawn (masked positions), in either sign; logits at the
    prompt's positions are never read."""
    from masklab.sample.samplers._decode import check_logits

    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 1] = float("nan")
    logits[1, 2, 4] = float("-inf")
    masked = torch.tensor([[False, True, True], [True, True, False]])
    check_logits(logits, 0, where=masked)  # both bad entries sit at prompt positions
    for pos in ([0, 0], [1, 2]):
        where = masked.clone()
        where[pos[0], pos[1]] = True
        with pytest.raises(ValueError, match="NaN or inf logits at step 7"):
            check_logits(logits, 7, where=where)


def test_each_row_stops_at_its_own_eos():
    """Once a row generates EOS, the rest of its generated positions become fill_id and it stops calling."""

    def model(x):  # EOS (id 3) certain at position 4 of row 0 only; elsewhere token 1
        out = torch.full(x.shape + (5,), -30.0)
        out[..., 1] = 0.0
        out[0, 4, 1], out[0, 4, 3] = -30.0, 0.0
        return out

    x = torch.full((2, 12), 4)
    x[:, 0] = 2
    g = generate(model, x, mask_id=4, sampler="fhs", eos_id=3, fill_id=0, return_order=True, seed=[1, 2])
    row0 = g.ids[0].tolist()
    assert row0[4] == 3 and row0[5:] == [0] * 7 and all(t == 1 for t in row0[1:4])
    assert g.ids[1, 1:].eq(1).all()
    assert g.nfe == 11  # row 1 needs all 11 steps; row 0 stopped earlier without extra calls


def test_cfg_unconditional_pass_masks_the_prompt():
    seen = []

    def model(x):
        seen.append(x.clone())
        return torch.zeros(x.shape + (6,))

    x = torch.tensor([[1, 2, 5, 5, 3]])
    generate(model, x, mask_id=5, sampler="confidence", cfg_scale=2.0)
    first = seen[0]
    assert first.shape[0] == 2 and torch.equal(first[0], x[0])
    assert torch.equal(first[1], torch.full((5,), 5))  # prompt (1, 2, 3) masked, generated slots masked anyway


@pytest.mark.parametrize(
    "options,message",
    [
        ({"block_length": 0}, "block_length must be positive, got 0"),
        ({"cfg_scale": -1.0}, "cfg_scale must be >= 0, got -1.0"),
    ],
)
@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_bad_decoding_options_are_refused_by_name(sampler, options, message):
    with pytest.raises(ValueError, match=message):
        generate(HMM, torch.full((1, 4), MASK), mask_id=MASK, sampler=sampler, **options)


def test_confidence_steps_are_clamped_to_the_masked_count():
    x = torch.full((1, 5), MASK)
    g = generate(HMM, x, mask_id=MASK, sampler="confidence", steps=100, return_order=True)
    assert g.steps == 5 and g.nfe == 5 and sorted(g.order[0].tolist()) == [0, 1, 2, 3, 4]


def test_threshold_uses_fewer_calls_when_the_model_is_sure():
    def sure(x):  # every position: token 1 with probability ~1
        out = torch.full(x.shape + (4,), -20.0)
        out[..., 1] = 0.0
        return out

    g = generate(sure, torch.full((2, 16), 3), mask_id=3, sampler="threshold", threshold=0.9, return_order=True)
    assert g.nfe == 1 and g.ids.eq(1).all()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    temperature=st.sampled_from([0.0, 0.7, 1.0]),
    top_k=st.sampled_from([None, 3]),
    prob=st.floats(0.0, 1.0),
)
def test_reveal_is_the_v_plus_one_way_draw_with_the_same_uniform(seed, temperature, top_k, prob):
    """Decoder.reveal (ancestral, remdm) equals MDLM's reverse step drawn as one (V + 1)-way categorical
    [prob * softmax(logits / T), 1 - prob] by inverse CDF with the same uniform, at every position."""
    g = torch.Generator().manual_seed(seed)
    B, L, V = 3, 16, 12
    x = torch.full((B, L), MASK)
    d = Decoder(None, x, mask_id=MASK, steps=4, keys=torch.arange(B) + seed, temperature=temperature, top_k=top_k)
    rows, cols = (x == MASK).nonzero(as_tuple=True)
    logits = torch.randn(rows.numel(), V, generator=g) * 3
    p = torch.full((rows.numel(),), prob, dtype=torch.float64)
    got = d.reveal(logits, rows, cols, p, 2)
    if temperature == 0:
        want = torch.where(d.uniforms(2, 1)[rows, cols] < p, filter_logits(logits, top_k).argmax(-1), V)
    else:
        q = filter_logits(logits.double() / temperature, top_k).softmax(-1)
        q = torch.cat([q * p[:, None], (1 - p)[:, None]], -1)  # (N, V + 1): the last is "stay masked"
        want = categorical(q.log(), u=d.uniforms(2, 0)[rows, cols])
    assert torch.equal(got, want)
