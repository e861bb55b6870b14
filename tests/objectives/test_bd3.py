"""BD3-LM's vectorized training (Arriola et al. 2025, Sec. 3.2) against its definitions.

- The mask is the paper's M_full = [[M_BD, M_OBC], [0, M_BC]], written here block by block.
- One pass over x_t (+) x_0 gives, for every block b, the logits of L / B separate passes over (clean blocks < b,
  noised block b) under the block-causal mask: what the block-by-block sampler computes.
- With one block (B = L) the loss is MDLM's on the same corruption: the noised sequence sees only itself.
- Each (row, block) has its own t; stratified t puts one (row, block) in each of the N equal strata of [eps, 1).
"""

import pytest
import torch
import torch.nn.functional as F

from masklab.attention import block_causal, to_dense
from masklab.corrupt import keyed
from masklab.data.tokenizers import byte_tokenizer, token_info
from masklab.models import build_model
from masklab.objectives.bd3 import BD3, BLOCK_KEY, block_noise, block_t, training_mask

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = token_info(byte_tokenizer())


def _model(max_len=64):
    torch.manual_seed(0)
    return build_model("llama", "micro", INFO, max_len).eval()


@pytest.mark.parametrize("n,block", [(8, 2), (12, 4), (6, 6), (5, 1)])
def test_the_mask_is_M_full_block_by_block(n, block):
    nb = n // block
    blocks = torch.arange(n) // block
    same = blocks[:, None] == blocks[None]  # (n, n) M_BD: a block with itself
    before = blocks[:, None] > blocks[None]  # M_OBC: strictly earlier blocks
    upto = blocks[:, None] >= blocks[None]  # M_BC: earlier blocks and itself
    full = torch.cat([torch.cat([same, before], 1), torch.cat([torch.zeros(n, n, dtype=torch.bool), upto], 1)], 0)
    got = to_dense(training_mask(n, block), 2 * n, 2 * n)[0, 0]
    assert torch.equal(got, full) and nb * block == n


def test_one_pass_equals_one_pass_per_block():
    model, block, n = _model(), 4, 16
    obj = BD3(model, INFO, block_size=block)
    x0 = torch.randint(5, 200, (3, n), generator=torch.Generator().manual_seed(1))
    keys = keyed.example_keys(0, 0, torch.arange(3))
    xt = block_noise(x0, keys, torch.full((3, n // block), 0.6), INFO, block).inputs
    with torch.no_grad():
        together = obj.vectorized_logits(xt, x0)  # (3, n, V)
        for b in range(n // block):
            lo, hi = b * block, (b + 1) * block
            ids = torch.cat([x0[:, :lo], xt[:, lo:hi]], 1)  # clean blocks before b, then the noised block b
            mask = to_dense(block_causal(block), hi, hi)
            alone = model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(hi)[None]).logits[:, lo:]
            assert (alone - together[:, lo:hi]).abs().max() < 1e-5, b


def test_one_block_is_the_mdlm_loss_on_the_same_corruption():
    model, n = _model(), 16
    obj = BD3(model, INFO, block_size=n)
    x0 = torch.randint(5, 200, (4, n), generator=torch.Generator().manual_seed(2))
    keys = keyed.example_keys(3, 0, torch.arange(4))
    loss, _ = obj(x0, keys)
    c = block_noise(x0, keys, block_t(keys, 1, obj.eps, "iid"), INFO, n)
    with torch.no_grad():
        logits = model(input_ids=c.inputs, attention_mask=torch.ones(1, 1, n, n, dtype=torch.bool)).logits
    ce = F.cross_entropy(logits.flatten(0, 1), c.targets.flatten(), reduction="none")
    mdlm = (ce * c.weights.flatten()).sum() / x0.numel()  # MDLM Eq. 10 per token, weight 1/t on masked tokens
    assert float(loss.detach()) == pytest.approx(float(mdlm), rel=1e-5) and c.mask.any()


def test_each_block_draws_its_own_time_and_stratified_times_fill_every_stratum():
    keys = keyed.example_keys(0, 0, torch.arange(6))
    t = block_t(keys, 4, 1e-3, "iid")
    assert t.shape == (6, 4) and len(set(t.flatten().tolist())) == 24
    strat = block_t(keys, 4, 0.0, "stratified", torch.arange(6), 6, keyed.batch_key(keys)).flatten().double()
    assert torch.equal(torch.sort((strat * 24).floor()).values, torch.arange(24, dtype=torch.float64))


def test_noise_masks_each_block_with_its_own_time():
    x0 = torch.randint(5, 200, (4000, 8), generator=torch.Generator().manual_seed(3))
    keys = keyed.example_keys(0, 0, torch.arange(4000))
    c = block_noise(x0, keys, torch.tensor([[0.2, 0.9]]).expand(4000, -1), INFO, 4)
    share = c.mask.view(4000, 2, 4).double().mean((0, 2))
    assert torch.allclose(share, torch.tensor([0.2, 0.9], dtype=torch.float64), atol=0.02)
    assert torch.allclose(c.weights[c.mask], 1 / torch.tensor([0.2, 0.9]).repeat_interleave(4).expand(4000, -1)[c.mask])


def test_the_block_size_is_saved_and_a_ragged_sequence_is_refused():
    model = _model()
    obj = BD3(model, INFO, block_size=4)
    assert getattr(model.config, BLOCK_KEY) == 4 and model.config.to_dict()[BLOCK_KEY] == 4
    with pytest.raises(ValueError, match="block_size=4 does not fit the sequence: 10 tokens are not whole blocks"):
        obj(torch.zeros(2, 10, dtype=torch.long), keyed.example_keys(0, 0, torch.arange(2)))
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        BD3(model, INFO, block_size=0)
