"""The frame registry: every entry is keyed on the example keys, never masks padding, returns one weight per
utterance, and `span` is wav2vec 2.0's span mask itself."""

import pytest
import torch

from masklab.corrupt import keyed
from masklab.corrupt.frames import span_mask
from masklab.corrupt.strategies import FRAME

B, T = 6, 80
LENGTHS = torch.tensor([80, 75, 60, 40, 33, 80])
NEEDS = {"ask2mask": lambda: {"confidence": torch.rand(B, T, generator=torch.Generator().manual_seed(0))}}


def _draw(name, keys, **kw):
    return FRAME.get(name)((B, T), keys, lengths=LENGTHS, mask_length=5, **NEEDS.get(name, dict)(), **kw)


@pytest.mark.parametrize("name", FRAME.names())
def test_every_frame_strategy_is_keyed_and_leaves_padding_alone(name):
    keys = keyed.train_keys(0, 0, torch.arange(B))
    a, b = _draw(name, keys), _draw(name, keys)
    assert a.mask.shape == (B, T) and a.mask.dtype == torch.bool and a.weights.shape == (B,)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.weights, b.weights)
    assert not a.mask[torch.arange(T)[None] >= LENGTHS[:, None]].any()  # padding is never masked
    assert a.mask.any(1).all()  # mask_prob 0.65: every row masks something
    # a row's mask depends on its own key only: permuting the rows permutes the masks
    perm = torch.tensor([5, 0, 1, 2, 3, 4])
    other = FRAME.get(name)((B, T), keys[perm], lengths=LENGTHS[perm], mask_length=5,
                            **{k: v[perm] for k, v in NEEDS.get(name, dict)().items()})  # fmt: skip
    assert torch.equal(other.mask, a.mask[perm])
    assert not torch.equal(_draw(name, keyed.train_keys(0, 1, torch.arange(B))).mask, a.mask)  # a new epoch


def test_span_is_the_wav2vec2_span_mask_with_unit_weights():
    keys = keyed.train_keys(3, 2, torch.arange(B))
    got = FRAME.get("span")((B, T), keys, mask_prob=0.3, mask_length=4, lengths=LENGTHS)
    assert torch.equal(got.mask, span_mask((B, T), 0.3, 4, lengths=LENGTHS, keys=keys))
    assert torch.equal(got.weights, torch.ones(B))


def test_ask2mask_refuses_confidence_of_another_shape():
    with pytest.raises(ValueError, match="confidence has shape"):
        FRAME.get("ask2mask")((B, T), keyed.train_keys(0, 0, torch.arange(B)), confidence=torch.rand(B, T - 1))
