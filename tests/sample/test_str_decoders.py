"""MDiff4STR's six decoders against a line-by-line transcription of OpenOCR's ``forward_*_decoding`` methods
(``openrec/modeling/decoders/mdiff_decoder.py``: in-place masked assignments, the NaN mean of a row with no valid
position, the exit flag), on random toy models whose rows differ; plus properties of each rule."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import keyed
from masklab.sample.str_decoders import STR_DECODER, after_eos, block_window, strings

EOS, MASK, C, L = 0, 11, 11, 9


def toy_model(seed: int, B: int):
    """A random bidirectional 'model': logits [B, L, C] = row bias + position-mixed token embeddings. EOS is
    favoured late in the row, so the decoders meet rows with and without an EOS."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(13, L, C, generator=g)  # token v at position j
    mix = torch.randn(L, L, generator=g) * 0.5
    bias = torch.randn(B, L, C, generator=g) * 2
    bias[:, :, EOS] += torch.linspace(-3, 3, L)

    def f(ids):
        contrib = emb[ids, torch.arange(L)]  # (B, L, C)
        return bias + torch.einsum("ij,bjc->bic", mix, contrib)

    return f


# ---- the reference, transcribed (torch.rand replaced by the same keyed draws; see the cloze note) ----------------
def ref_after_eos(noisy):
    eos_mask = noisy == EOS
    eos_indices = eos_mask.float().argmax(dim=1)
    eos_exists = eos_mask.any(dim=1)
    arange = torch.arange(noisy.shape[1]).unsqueeze(0).expand(noisy.shape[0], -1)
    return (arange > eos_indices.unsqueeze(1)) | ~eos_exists.unsqueeze(1)


def ref_confidence_loop(f, B, steps, select):
    noisy = torch.full((B, L), MASK)
    masked_pre = torch.full((B, L), True)
    flag_exit = False
    for step_i in range(steps):
        pred_step = torch.softmax(f(noisy), -1)
        if step_i == 0:
            logits = pred_step.clone()
        logits[masked_pre] = pred_step[masked_pre]
        prob, index = torch.max(pred_step, dim=-1)
        eos_after = ref_after_eos(index)
        chosen = select(step_i, prob, masked_pre & ~eos_after)
        noisy[chosen] = index[chosen]
        masked_pre = noisy == MASK
        vaild = masked_pre & ~eos_after
        if flag_exit:
            break
        if (vaild.sum(dim=-1) <= 1).all():
            flag_exit = True
    return logits


def ref_mean_rule(prob, valid):
    prob = prob * valid.float()
    avg = prob.sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True)  # NaN for a row with none valid
    return (prob > avg) & valid


def ref_low_confidence(f, B, steps, keys):
    return ref_confidence_loop(f, B, steps, lambda s, p, v: ref_mean_rule(p, v))


def ref_random(f, B, steps, keys):
    def pick(s, p, v):
        rand = keyed.uniform(keyed.derive(keys, 0x5D0C, s), L)  # the decoder's torch.rand, keyed
        return (rand > 0.5) & v

    return ref_confidence_loop(f, B, steps, pick)


def ref_semi_autoregressive(f, B, steps, keys):
    block_size = L // steps

    def pick(step_i, p, v):
        block = torch.full((B, L), False)
        if step_i <= 2:
            if steps > 2:
                block[:, : block_size * (step_i + 1)] = True
            else:
                block = ~block
        elif step_i >= steps - 2:
            block[:, block_size * (step_i - 1) :] = True
        else:
            block[:, block_size * (step_i - 1) : block_size * (step_i + 1)] = True
        return ref_mean_rule(p, v & block)

    return ref_confidence_loop(f, B, steps, pick)


def ref_parallel(f, B, steps, keys):
    return torch.softmax(f(torch.full((B, L), MASK)), -1)


def ref_autoregressive(f, B, steps, keys):
    noisy = torch.full((B, L), MASK)
    logits = []
    for step_i in range(L):
        pred = torch.softmax(f(noisy), -1)
        logits.append(pred[:, step_i : step_i + 1])
        noisy[:, step_i] = pred[:, step_i].argmax(-1)
        if (noisy == EOS).any(dim=-1).all():
            break
    return torch.cat(logits + [pred[:, step_i + 1 :]], dim=1)  # masklab keeps the last pass past the EOS


def ref_cloze(f, B, steps, keys):
    first = torch.softmax(f(torch.full((B, L), MASK)), -1)
    noisy = first.argmax(-1)
    noisy[ref_after_eos(noisy)] = MASK
    logits = first.clone()  # the reference: torch.rand((bs, L, C)) (see the module docstring)
    for step_i in range(L):
        noisy[:, step_i] = MASK
        pred = torch.softmax(f(noisy), -1)[:, step_i : step_i + 1]
        logits[:, step_i : step_i + 1] = pred
        noisy[:, step_i] = pred.argmax(-1)[:, 0]
        if (noisy[:, : step_i + 1] == EOS).any(-1).all():  # the reference: argmax of the whole buffer
            break
    return logits


REFERENCE = {
    "parallel": ref_parallel,
    "autoregressive": ref_autoregressive,
    "low_confidence": ref_low_confidence,
    "random": ref_random,
    "semi_autoregressive": ref_semi_autoregressive,
    "cloze": ref_cloze,
}


@pytest.mark.parametrize("name", STR_DECODER.names())
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 6), B=st.integers(1, 5))
def test_decoder_equals_the_reference_transcription(name, seed, steps, B):
    f = toy_model(seed, B)
    keys = keyed.eval_keys(seed, torch.arange(B))
    out = STR_DECODER.get(name)(f, (B, L), mask_id=MASK, eos_id=EOS, steps=steps, keys=keys)
    ref = REFERENCE[name](f, B, steps, keys)
    assert torch.allclose(out.probs, ref, atol=1e-6)


class Recorder:
    """Wraps a model and keeps every input it is called with."""

    def __init__(self, f):
        self.f, self.inputs = f, []

    def __call__(self, ids):
        self.inputs.append(ids.clone())
        return self.f(ids)


@pytest.mark.parametrize("name", STR_DECODER.names())
def test_a_model_that_knows_the_text_is_read_exactly(name):
    """A model that puts its mass on the true string whatever it sees: every decoder returns that string."""
    truth = torch.tensor([[3, 5, 1, EOS, 0, 0, 0, 0, 0], [7, 7, 2, 9, 4, 1, 8, 6, EOS]])
    logits = torch.nn.functional.one_hot(truth, C).float() * 5

    out = STR_DECODER.get(name)(
        lambda ids: logits, (2, L), mask_id=MASK, eos_id=EOS, steps=3, keys=torch.tensor([1, 2])
    )
    assert strings(out.ids, EOS) == [[3, 5, 1], [7, 7, 2, 9, 4, 1, 8, 6]]


def test_low_confidence_commits_above_the_mean_and_stops():
    """Fixed confidences (the model ignores its input): the first pass commits the positions before the EOS whose
    confidence is above their mean; one step is the parallel decoder."""
    conf = torch.tensor([[0.9, 0.2, 0.8, 0.3, 0.95, 0.5, 0.5, 0.5, 0.5]])
    tok = torch.tensor([[4, 5, 6, 7, EOS, 1, 1, 1, 1]])
    logits = torch.log(torch.nn.functional.one_hot(tok, C) * conf[..., None] + (1 - conf[..., None]) / (C - 1))
    rec = Recorder(lambda ids: logits)
    STR_DECODER.get("low_confidence")(rec, (1, L), mask_id=MASK, eos_id=EOS, steps=5)
    # valid: positions 0-4 (up to the EOS); their mean confidence is 0.63: positions 0, 2 and 4 commit
    assert rec.inputs[1][0].tolist() == [4, MASK, 6, MASK, EOS, MASK, MASK, MASK, MASK]
    # second pass: 0.2 and 0.3 remain, 0.3 > 0.25 commits; one valid left, so one more pass and the loop stops
    assert rec.inputs[2][0].tolist() == [4, MASK, 6, 7, EOS, MASK, MASK, MASK, MASK] and len(rec.inputs) == 3
    f = toy_model(0, 3)
    one = STR_DECODER.get("low_confidence")(f, (3, L), mask_id=MASK, eos_id=EOS, steps=1)
    assert torch.equal(one.probs, STR_DECODER.get("parallel")(f, (3, L), mask_id=MASK, eos_id=EOS).probs)


def test_rule_shapes_autoregressive_cloze_semi_autoregressive():
    f = toy_model(1, 4)
    rec = Recorder(f)
    STR_DECODER.get("autoregressive")(rec, (4, L), mask_id=MASK, eos_id=EOS, steps=1)
    for i, x in enumerate(rec.inputs):  # pass i sees positions < i decoded and the rest masked
        assert (x[:, i:] == MASK).all() and (x[:, :i] != MASK).all()
    rec = Recorder(f)
    STR_DECODER.get("cloze")(rec, (4, L), mask_id=MASK, eos_id=EOS, steps=1)
    assert (rec.inputs[0] == MASK).all()
    for i, x in enumerate(rec.inputs[1:]):  # re-prediction i masks position i (and what followed the EOS)
        assert (x[:, i] == MASK).all() and (x[:, :i] != MASK).all()
    rec = Recorder(f)
    STR_DECODER.get("semi_autoregressive")(rec, (4, L), mask_id=MASK, eos_id=EOS, steps=4)
    for s in range(len(rec.inputs) - 1):  # what a pass commits lies inside its window
        new = (rec.inputs[s] == MASK) & (rec.inputs[s + 1] != MASK)
        outside = torch.ones(L, dtype=torch.bool)
        outside[block_window(s, 4, L)] = False
        assert not new[:, outside].any()


def test_random_decoder_is_keyed_and_after_eos_follows_the_reference():
    f = toy_model(2, 6)
    run = STR_DECODER.get("random")
    a = run(f, (6, L), mask_id=MASK, eos_id=EOS, steps=4, keys=keyed.eval_keys(0, torch.arange(6)))
    b = run(f, (6, L), mask_id=MASK, eos_id=EOS, steps=4, keys=keyed.eval_keys(0, torch.arange(6)))
    assert torch.equal(a.probs, b.probs)
    pred = torch.tensor([[1, EOS, 2, EOS], [1, 2, 3, 4]])
    assert after_eos(pred, EOS).tolist() == [[False, False, True, True], [True] * 4]


def test_bad_arguments_are_one_line_errors():
    f = toy_model(0, 2)
    with pytest.raises(ValueError, match="mask_id"):
        STR_DECODER.get("parallel")(f, (2, L), mask_id=3, eos_id=EOS)
    with pytest.raises(ValueError, match="steps"):
        STR_DECODER.get("low_confidence")(f, (2, L), mask_id=MASK, eos_id=EOS, steps=0)
    with pytest.raises(ValueError, match="keys"):
        STR_DECODER.get("random")(f, (2, L), mask_id=MASK, eos_id=EOS, steps=2)
    with pytest.raises(ValueError, match="shape"):
        STR_DECODER.get("parallel")(f, (2,), mask_id=MASK, eos_id=EOS)
