"""Block diffusion decoding (BD3-LM, Arriola et al. 2025, Alg. 2): blocks in order, every sampler inside a block, the
exact KV cache changing nothing, per-row prompts and EOS, bad input; and ``masklab generate --cache`` on a bd3 run.

The exact HMM denoiser marginalises masked positions, so it is block-causal for free: given the prefix up to a block
it gives the block's exact conditionals (its rows are right-padded with a pad it treats as unobserved)."""

import pytest
import torch

from masklab.cli import main
from masklab.data.synthetic import RandomHMM
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.bd3 import BD3
from masklab.sample import SAMPLER
from masklab.sample.block import block_generate, pad_to_blocks
from masklab.sample.generate import batch_prompts

pytestmark = pytest.mark.usefixtures("one_thread")

HMM = RandomHMM(states=6, symbols=12, seed=1)
MASK, PAD = HMM.mask_id, 99
INFO = token_info(byte_tokenizer())
OPTIONS = {"remdm": {"steps": 6}, "mask_predict": {"steps": 3}, "ancestral": {"steps": 6}}


class PaddedHMM:
    """The HMM denoiser on right-padded rows, keeping the width of every input it was given."""

    def __init__(self):
        self.widths = []

    def __call__(self, x):
        self.widths.append(x.shape[1])
        return HMM(x.masked_fill(x == PAD, MASK))


def _prompts(n=6):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 12, (int(k),), generator=g).tolist() for k in torch.randint(1, 11, (n,), generator=g)]


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    model = build_model("llama", "micro", INFO, 64).eval()
    BD3(model, INFO, block_size=8)  # marks the model block-causal with blocks of 8
    return model


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_every_sampler_decodes_inside_one_block_at_a_time_and_in_order(sampler):
    model = PaddedHMM()
    x = pad_to_blocks(batch_prompts(_prompts(), 13, mask_id=MASK, pad_id=PAD), 4, PAD)
    g = block_generate(model, x, mask_id=MASK, block_length=4, sampler=sampler, pad_id=PAD, seed=list(range(6)),
                       return_order=True, **OPTIONS.get(sampler, {}))  # fmt: skip
    assert not (g.ids == MASK).any() and torch.equal(g.ids[x != MASK], x[x != MASK])
    assert set(model.widths) <= set(range(4, x.shape[1] + 1, 4))  # the model sees the prefix up to one block
    assert model.widths == sorted(model.widths)  # and the blocks go in order
    gen = x == MASK
    for r in range(6):  # reveal steps grow block after block
        steps = [g.order[r, k * 4 : (k + 1) * 4][gen[r, k * 4 : (k + 1) * 4]] for k in range(x.shape[1] // 4)]
        steps = [s for s in steps if len(s)]
        assert all(a.max() < b.min() for a, b in zip(steps[:-1], steps[1:], strict=True))


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_a_row_is_the_same_alone_and_in_a_batch(sampler):
    prompts, seeds = _prompts(), list(range(20, 26))
    kw = dict(mask_id=MASK, block_length=4, sampler=sampler, pad_id=PAD, **OPTIONS.get(sampler, {}))
    together = block_generate(PaddedHMM(), pad_to_blocks(batch_prompts(prompts, 9, mask_id=MASK, pad_id=PAD), 4, PAD),
                              seed=seeds, **kw)  # fmt: skip
    for r in (0, 3):
        x = pad_to_blocks(batch_prompts([prompts[r]], 9, mask_id=MASK, pad_id=PAD), 4, PAD)
        alone = block_generate(PaddedHMM(), x, seed=[seeds[r]], **kw)
        assert torch.equal(alone[0], together[r, : x.shape[1]])


@pytest.mark.parametrize("sampler", SAMPLER.names())
def test_the_cache_changes_no_id(llama, sampler):
    tok = byte_tokenizer()
    texts = ["def f(x):\n    return x + 1", "import os", "x"]  # rows end in blocks 4, 2 and 1: two leave early
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    x = pad_to_blocks(batch_prompts(prompts, 12, mask_id=INFO.mask_id, pad_id=INFO.pad_id), 8, INFO.pad_id)
    kw = dict(mask_id=INFO.mask_id, pad_id=INFO.pad_id, eos_id=INFO.eos_id, sampler=sampler, seed=[5, 6, 7])
    kw.update(OPTIONS.get(sampler, {}))
    with_cache = block_generate(llama, x, cache=True, return_order=True, **kw)
    without = block_generate(llama, x, cache=False, return_order=True, **kw)
    assert torch.equal(with_cache.ids, without.ids) and torch.equal(with_cache.order, without.order)
    assert with_cache.nfe == without.nfe and with_cache.stats["commits"] == 4  # blocks 0-3 kept; 4 is the last


def test_a_row_is_the_same_alone_and_in_a_batch_with_the_cached_llama(llama):
    """Right-padded rows of other lengths change matmul shapes (logits move in the last float bits); the float64
    keyed draws keep the ids equal."""
    tok = byte_tokenizer()
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ["class A:", "#", "for i in r", "return"]]
    kw = dict(mask_id=INFO.mask_id, pad_id=INFO.pad_id, cache=True, sampler="fhs")
    batch = pad_to_blocks(batch_prompts(prompts, 14, mask_id=INFO.mask_id, pad_id=INFO.pad_id), 8, INFO.pad_id)
    together = block_generate(llama, batch, seed=[1, 2, 3, 4], **kw)
    for r in (0, 2):
        x = pad_to_blocks(batch_prompts([prompts[r]], 14, mask_id=INFO.mask_id, pad_id=INFO.pad_id), 8, INFO.pad_id)
        assert torch.equal(block_generate(llama, x, seed=[r + 1], **kw)[0], together[r, : x.shape[1]])


def test_each_row_stops_at_its_own_eos_and_leaves_the_batch():
    rows_seen = []

    def model(x):  # EOS (3) certain at position 5 of the row whose first token is 2; elsewhere token 1
        rows_seen.append(x.shape[0])
        out = torch.full(x.shape + (5,), -30.0)
        out[..., 1] = 0.0
        if x.shape[1] > 5:  # the model is given the prefix up to the current block
            first = x[:, 0] == 2
            out[first, 5, 1], out[first, 5, 3] = -30.0, 0.0
        return out

    x = torch.full((2, 16), 4)
    x[0, 0], x[1, 0] = 2, 0
    g = block_generate(model, x, mask_id=4, block_length=4, sampler="fhs", eos_id=3, fill_id=0, seed=[1, 2],
                       return_order=True)  # fmt: skip
    assert g.ids[0].tolist() == [2, 1, 1, 1, 1, 3] + [0] * 10 and g.ids[1, 1:].eq(1).all()
    assert rows_seen == [2] * 7 + [1] * 8  # one call per token; row 0 leaves after block 1, where its EOS fell


def test_bad_input_is_refused_by_name(llama):
    x = torch.full((1, 12), MASK)
    with pytest.raises(ValueError, match="block_length=5 does not fit the sequence: its 12 positions are not whole"):
        block_generate(HMM, x, mask_id=MASK, block_length=5)
    with pytest.raises(ValueError, match="block_length: the model does not say its block size"):
        block_generate(HMM, x, mask_id=MASK)
    with pytest.raises(ValueError, match="block_length must be a positive int, got 0"):
        block_generate(HMM, x, mask_id=MASK, block_length=0)
    with pytest.raises(ValueError, match="cache: RandomHMM cannot return keys and values"):
        block_generate(HMM, x, mask_id=MASK, block_length=4, cache=True)
    with pytest.raises(ValueError, match="cfg_scale: classifier-free guidance is not supported in block decoding"):
        block_generate(HMM, x, mask_id=MASK, block_length=4, cfg_scale=1.0)
    with pytest.raises(ValueError, match="exceeds the model's 64"):
        block_generate(llama, torch.full((1, 72), INFO.mask_id), mask_id=INFO.mask_id, cache=True)


# ------------------------------------------------------------------------------------------------ the command line

FAST = ["preset=micro", "seq_len=32", "block_size=8", "batch_size=8", "steps=3", "warmup=1", "eval_every=0",
        "ckpt_every=0", "eval_batches=1", "max_minutes=0"]  # fmt: skip


@pytest.fixture(scope="module")
def bd3_run(tmp_path_factory, small_corpus):
    out = tmp_path_factory.mktemp("bd3") / "run"
    assert main(["train", "--recipe", "bd3-tiny", "--data", str(small_corpus), "--out", str(out), "--no-progress",
                 *FAST]) == 0  # fmt: skip
    return out


def test_generate_with_the_cache_on_a_bd3_run(bd3_run, capsys):
    argv = ["generate", "--model", str(bd3_run), "--prompt", "def <mask:12>(x):\n    <mask:6>", "--seed", "4"]
    assert main([*argv, "--cache"]) == 0
    cached = capsys.readouterr()
    assert cached.out.startswith("def ") and "(x):\n    " in cached.out and "model calls" in cached.err
    assert main(argv) == 0  # the same ids without the cache
    assert capsys.readouterr().out == cached.out


def test_generate_refuses_bad_blocks_and_a_cache_it_cannot_keep(bd3_run, tmp_path, capsys):
    mdm = tmp_path / "mdm"
    build_model("modernbert", "micro", INFO, 32).save_pretrained(mdm)
    byte_tokenizer().save_pretrained(mdm)
    for argv, message in [
        (["--model", str(bd3_run), "--block-length", "0", "--cache"], "block_length must be a positive int, got 0"),
        (["--model", str(bd3_run), "--block-length", "48"], "the sequence of 48 positions (whole blocks of 48)"),
        (["--model", str(mdm), "--cache"], "cache: ModernBertForMaskedLM cannot return keys and values"),
    ]:
        assert main(["generate", "--prompt", "x = <mask:3>", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("masklab: error: ") and message in err and err.count("\n") == 1
