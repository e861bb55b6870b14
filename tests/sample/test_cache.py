"""The exact KV cache (BD3-LM, Arriola et al. 2025, Sec. 3.1): a block's logits against the cached keys and values of
the final blocks equal those of the whole prefix run again under the block-causal mask, and those of the training
pass over x_t (+) x_0 (within 1e-5); a model that cannot return keys and values is refused by name."""

import pytest
import torch

from masklab.attention import block_causal, to_dense
from masklab.corrupt import keyed
from masklab.data.synthetic import RandomHMM
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.bd3 import BD3, block_noise
from masklab.sample.cache import KVCache

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = token_info(byte_tokenizer())
PAD, BLOCK, L = INFO.pad_id, 4, 16


def _rows():
    """3 rows of 16 tokens; the last two right-padded (their padding must stay hidden)."""
    x = torch.randint(5, 200, (3, L), generator=torch.Generator().manual_seed(0))
    x[1, 13:], x[2, 6:] = PAD, PAD
    return x


def _uncached(model, ids):
    mask = to_dense(block_causal(BLOCK), ids.shape[1], ids.shape[1]) & (ids != PAD)[:, None, None, :]
    return model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(ids.shape[1])[None]).logits


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("llama", "micro", INFO, 64).eval()


def test_cached_logits_equal_the_uncached_ones_block_after_block(model):
    x = _rows()
    noised = block_noise(x, keyed.example_keys(0, 0, torch.arange(3)), torch.full((3, 4), 0.7), INFO, BLOCK).inputs
    kv = KVCache(model, BLOCK, PAD)
    with torch.no_grad():
        for b in range(L // BLOCK):
            lo, hi = b * BLOCK, (b + 1) * BLOCK
            block = noised[:, lo:hi]  # a block being denoised, against the final blocks before it
            reference = _uncached(model, torch.cat([x[:, :lo], block], 1))[:, lo:]
            assert (kv.logits(block) - reference).abs().max() < 1e-5, b
            assert (kv.logits(block[1:], torch.tensor([1, 2])) - reference[1:]).abs().max() < 1e-5  # a row subset
            assert kv.length == lo  # a denoising step leaves the cache as it was
            kv.commit(x[:, lo:hi])


def test_cached_logits_equal_the_training_pass(model):
    """Sampling and training compute the same p(x^b | x_t^b, x^{<b}): the KV cache against BD3's vectorized pass."""
    x = _rows()[:1]
    noised = block_noise(x, keyed.example_keys(1, 0, torch.arange(1)), torch.full((1, 4), 0.5), INFO, BLOCK).inputs
    with torch.no_grad():
        trained = BD3(model, INFO, block_size=BLOCK).vectorized_logits(noised, x)  # (1, L, V)
        kv = KVCache(model, BLOCK, PAD)
        for b in range(L // BLOCK):
            lo, hi = b * BLOCK, (b + 1) * BLOCK
            assert (kv.logits(noised[:, lo:hi]) - trained[:, lo:hi]).abs().max() < 1e-5, b
            kv.commit(x[:, lo:hi])


def test_rows_that_leave_keep_the_others_exact(model):
    x = _rows()
    kv = KVCache(model, BLOCK, PAD)
    with torch.no_grad():
        kv.commit(x[:, :BLOCK])
        kv.keep(torch.tensor([0, 2]))
        kv.commit(x[[0, 2], BLOCK : 2 * BLOCK])
        got = kv.logits(x[[0, 2], 2 * BLOCK : 3 * BLOCK])
        assert (got - _uncached(model, x[[0, 2], : 3 * BLOCK])[:, 2 * BLOCK :]).abs().max() < 1e-5


@pytest.mark.parametrize("which", ["modernbert", "callable"])
def test_a_model_that_cannot_return_keys_and_values_is_refused(which):
    model = build_model("modernbert", "micro", INFO, 64) if which == "modernbert" else RandomHMM(4, 8)
    name = "ModernBertForMaskedLM" if which == "modernbert" else "RandomHMM"
    with pytest.raises(ValueError, match=f"cache: {name} cannot return keys and values"):
        KVCache(model, BLOCK, PAD)
