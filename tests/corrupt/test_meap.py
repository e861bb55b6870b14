"""MEAP (Zhuang et al. 2025): random input positions become the mask token, next-token targets unchanged,
a separate pattern per row (MEAP's code uses one per batch); MEAP-SFT duplicates each example and masks the
copy's response as the reference's MEAP-SFT.py does."""

import torch

from masklab.corrupt import keyed
from masklab.corrupt.meap import meap_mask, meap_sft


def test_exact_count_targets_clean_and_per_row_patterns():
    B, L = 64, 50
    ids = torch.randint(5, 1000, (B, L))
    ids[:, 0] = 1  # BOS
    att = torch.ones(B, L, dtype=torch.long)
    att[:10, 40:] = 0
    c = meap_mask(ids, keyed.example_keys(0, 0, range(B)), mask_id=4, special_ids=[0, 1], prob=0.15, attention_mask=att)
    n = (att.bool() & (ids != 1)).sum(1)
    assert torch.equal(c.mask.sum(1), torch.floor(n * 0.15 + 0.5).long())
    assert not c.mask[:, 0].any() and not c.mask[:10, 40:].any()
    assert torch.equal(c.inputs[c.mask], torch.full((int(c.mask.sum()),), 4))
    assert torch.equal(c.targets[att.bool()], ids[att.bool()]) and (c.targets[~att.bool()] == -100).all()
    assert len({tuple(r.nonzero().flatten().tolist()) for r in c.mask}) > B - 2


def test_same_example_same_mask_in_any_batch():
    ids = torch.randint(5, 1000, (8, 30))
    k = keyed.example_keys(3, 1, range(8))
    a = meap_mask(ids, k, mask_id=4, prob=0.2)
    b = meap_mask(ids[[5, 2]], k[[5, 2]], mask_id=4, prob=0.2)
    assert torch.equal(a.inputs[[5, 2]], b.inputs)


def _sft_rows():
    """[prompt | response | EOS ...] rows as masklab.data.sft builds them: BOS 1, EOS 2; the last row's response
    was cut before its EOS, the third one's response is short."""
    g = torch.Generator().manual_seed(0)
    rows, prompts = [], [5, 9, 4, 6]
    for p, n in zip(prompts, [70, 120, 30, 200], strict=True):
        ids = (
            [1]
            + torch.randint(5, 1000, (p - 1,), generator=g).tolist()
            + torch.randint(5, 1000, (n,), generator=g).tolist()
        )
        ids = (ids + [2])[:180]
        rows.append(ids + [2] * (180 - len(ids)))
    return torch.tensor(rows), torch.tensor(prompts)


def test_meap_sft_duplicates_and_masks_the_copy_as_the_reference():
    """MEAP-SFT (the reference's preprocess_function): the original keeps its tokens and is supervised on its
    response and EOS; the copy has max(1, int(0.1 n)) of its n response tokens masked (responses over 50
    tokens only) and is supervised at those positions only, with the original tokens."""
    ids, prompt = _sft_rows()
    B, L = ids.shape
    c = meap_sft(ids, keyed.example_keys(0, 0, range(B)), prompt, mask_id=4, eos_id=2, ratio=0.1, min_response=50)
    assert c.inputs.shape == (2 * B, L) and torch.equal(c.inputs[:B], ids)
    for r in range(B):
        row = ids[r].tolist()
        eos = [i for i in range(prompt[r], L) if row[i] == 2]
        end = eos[0] if eos else L  # the response: prompt_len .. first EOS (or the end of a cut row)
        n = end - prompt[r]
        want_orig = [-100] * int(prompt[r]) + row[prompt[r] : end + 1] + [-100] * (L - end - 1)
        assert c.targets[r].tolist() == want_orig[:L]
        masked = (c.inputs[B + r] == 4).nonzero().flatten().tolist()
        k = max(1, int(n * 0.1)) if n > 50 else 0
        assert len(masked) == k and all(prompt[r] <= m < end for m in masked)
        assert c.mask[B + r].nonzero().flatten().tolist() == masked and not c.mask[r].any()
        copy_y = [row[i] if i in masked else -100 for i in range(L)]
        assert c.targets[B + r].tolist() == copy_y
        assert torch.equal(c.inputs[B + r][c.inputs[B + r] != 4], ids[r][c.inputs[B + r] != 4])


def test_meap_sft_masks_uniformly_over_the_response_and_per_example():
    ids, prompt = _sft_rows()
    ids, prompt = ids[[1]].expand(4000, -1), prompt[[1]].expand(4000)
    keys = keyed.example_keys(0, 0, range(4000))
    c = meap_sft(ids, keys, prompt, mask_id=4, eos_id=2)
    freq = c.mask[4000:].float().mean(0)[9:129]  # the 120 response positions, 12 masked per row
    assert abs(float(freq.mean()) - 0.1) < 1e-6 and float(freq.min()) > 0.07 and float(freq.max()) < 0.13
    alone = meap_sft(ids[[7]], keys[[7]], prompt[[7]], mask_id=4, eos_id=2)
    assert torch.equal(alone.inputs[1], c.inputs[4007])  # an example's copy does not depend on its batch
