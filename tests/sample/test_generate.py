"""generate(): batch invariance with a real model, and bad input refused by name.

What every sampler must do (batch invariance on the exact HMM, blocks, EOS, CFG, bad logits) is tested over the
sampler registry in tests/sample/samplers/."""

import pytest
import torch

from masklab.data.synthetic import RandomHMM
from masklab.sample import generate
from masklab.sample.generate import batch_prompts

pytestmark = pytest.mark.usefixtures("one_thread")

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK, PAD = HMM.mask_id, 99


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


def test_an_empty_batch_and_nan_temperature_are_refused():
    with pytest.raises(ValueError, match=r"non-empty \[B, L\] tensor, got shape \(0, 4\)"):
        generate(HMM, torch.zeros(0, 4, dtype=torch.long), mask_id=MASK)
    with pytest.raises(ValueError, match="temperature must be >= 0, got nan"):
        generate(HMM, torch.full((1, 4), MASK), mask_id=MASK, temperature=float("nan"))


def test_an_unknown_option_is_refused_naming_every_option_the_sampler_takes():
    """The shared decoding options and the sampler's own keyword options; never the catch-all ``**common``."""
    taken = "['alg_temp', 'block_length', 'cfg_scale', 'eos_id', 'fill_id', 'pad_id', 'remasking', 'temperature', "
    with pytest.raises(ValueError, match=r"sampler 'confidence' does not take option 'common'; it takes \[") as e:
        generate(HMM, torch.full((1, 4), MASK), mask_id=MASK, sampler="confidence", common=1)
    assert str(e.value).endswith(taken + "'top_k', 'top_p']")
