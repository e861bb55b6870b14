"""generate(): batch invariance, variable prompt lengths, EOS stopping, blocks, CFG, and bad input."""

import pytest
import torch

from masklab.data.synthetic import RandomHMM
from masklab.sample import SAMPLERS, generate
from masklab.sample.generate import batch_prompts

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK, PAD = HMM.mask_id, 99


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
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


def test_batch_invariance_with_a_real_hf_model():
    """A ModernBERT (random init, micro preset) with attention masks: the batch changes matmul shapes, so
    logits differ in the last float bits; the float64 keyed draws make equal ids still hold (a flip would need
    a uniform within ~1e-6 of a CDF boundary)."""
    from masklab.data.tokenizers import byte_tokenizer, token_info
    from masklab.models import build_model

    tok = byte_tokenizer()
    info = token_info(tok)
    torch.manual_seed(0)
    model = build_model("modernbert", "micro", info, 64).eval()
    prompts = [
        tok(t, add_special_tokens=False)["input_ids"]
        for t in [
            "def f(x):",
            "import os",
            "class A:\n    pass",
            "x = 1",
            "for i in r",
            "#",
            "return y",
            "if a:",
        ]
    ]
    batch = batch_prompts(prompts, 12, mask_id=info.mask_id, pad_id=info.pad_id)
    seeds = list(range(8))
    for sampler in ("fhs",):
        kw = dict(mask_id=info.mask_id, sampler=sampler, pad_id=info.pad_id)
        together = generate(model, batch, seed=seeds, **kw)
        alone = generate(
            model,
            batch_prompts([prompts[2]], 12, mask_id=info.mask_id, pad_id=info.pad_id),
            seed=[seeds[2]],
            **kw,
        )
        assert torch.equal(alone[0], together[2, : alone.shape[1]])


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


def test_blocks_are_revealed_in_order():
    x = torch.full((3, 13), MASK)
    x[:, :1] = 0
    for sampler in sorted(SAMPLERS):
        g = generate(HMM, x, mask_id=MASK, sampler=sampler, block_length=4, return_order=True, seed=7)
        o = g.order[:, 1:]
        for b in range(2):
            assert o[:, 4 * b : 4 * b + 4].max(1).values.lt(o[:, 4 * b + 4 :].min(1).values).all(), sampler


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


def test_nan_logits_name_the_step():
    calls = []

    def bad(x):
        calls.append(1)
        out = torch.zeros(x.shape + (4,))
        if len(calls) == 3:
            out[0, :, 2] = float("nan")
        return out

    for sampler in sorted(SAMPLERS):
        calls.clear()
        with pytest.raises(ValueError, match="NaN or inf logits at step 2"):
            extra = {"threshold": 1.0} if sampler == "threshold" else {}
            generate(bad, torch.full((1, 12), 3), mask_id=3, sampler=sampler, steps=12, **extra)


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


def test_bad_input_is_refused():
    x = torch.full((1, 4), MASK)
    with pytest.raises(ValueError, match="mask_id is missing"):
        generate(HMM, x, mask_id=None)
    with pytest.raises(ValueError, match="generation length must be positive, got 0"):
        batch_prompts([[1, 2]], 0, mask_id=MASK, pad_id=PAD)
    with pytest.raises(ValueError, match="no mask token"):
        generate(HMM, torch.zeros(1, 4, dtype=torch.long), mask_id=MASK)
    with pytest.raises(ValueError, match="got 3 step counts for 1 rows"):
        generate(HMM, x, mask_id=MASK, steps=[1, 2, 3])
    with pytest.raises(ValueError, match="steps must be positive"):
        generate(HMM, x, mask_id=MASK, steps=0)
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        generate(HMM, x, mask_id=MASK, sampler="nope")
    with pytest.raises(ValueError, match="sampler 'fhs' does not take option 'threshold'"):
        generate(HMM, x, mask_id=MASK, sampler="fhs", threshold=0.5)
    with pytest.raises(ValueError, match="remasking must be one of"):
        generate(HMM, x, mask_id=MASK, remasking="best")


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
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


def test_an_empty_batch_and_nan_temperature_are_refused():
    with pytest.raises(ValueError, match=r"non-empty \[B, L\] tensor, got shape \(0, 4\)"):
        generate(HMM, torch.zeros(0, 4, dtype=torch.long), mask_id=MASK)
    with pytest.raises(ValueError, match="temperature must be >= 0, got nan"):
        generate(HMM, torch.full((1, 4), MASK), mask_id=MASK, temperature=float("nan"))
