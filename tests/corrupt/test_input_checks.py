"""Bad arguments to the token and frame corruptions are one clear error naming the argument (issue: defects
6, 8 and 10), with the compiled kernels on and off."""

import pytest
import torch

from masklab.corrupt import tokens
from masklab.corrupt._backend import use_backend
from masklab.corrupt.frames import span_mask
from masklab.corrupt.keyed import train_keys

IDS = torch.randint(5, 50, (2, 16))
KEYS = train_keys(0, 0, [0, 1])
OK = dict(mask_id=1, vocab_size=50, special_ids=[0, 1, 2, 3, 4])


@pytest.fixture(params=["kernel", "numpy"])
def path(request):
    with use_backend(request.param):
        yield


def word_ids():
    return torch.arange(16).div(2, rounding_mode="floor").expand(2, 16).contiguous()


def call(fn, **kw):
    args = {**OK, **kw}
    ids = args.pop("ids", IDS)
    if fn is tokens.whole_word_mask:
        return fn(ids, KEYS, word_ids(), **args)
    return fn(ids, KEYS, **args)


BAD = [
    (dict(prob="0.15"), TypeError, "prob"),  # was string repetition: memory exhaustion without numba
    (dict(prob=float("nan")), ValueError, "prob"),
    (dict(prob=True), TypeError, "prob"),
    (dict(count=-1), ValueError, "count"),
    (dict(mask_id=None), TypeError, "mask_id"),
    (dict(mask_id=1.5), TypeError, "mask_id"),
    (dict(ids=IDS.float()), TypeError, "ids"),
]


@pytest.mark.parametrize("fn", [tokens.random_mask, tokens.whole_word_mask], ids=["random", "whole_word"])
@pytest.mark.parametrize("kw,err,name", BAD, ids=[f"{next(iter(b[0]))}" for b in BAD])
def test_bad_token_arguments_name_the_argument(path, fn, kw, err, name):
    with pytest.raises(err, match=name):
        call(fn, **kw)


def test_valid_arguments_still_pass(path):
    assert call(tokens.random_mask, prob=0.5).mask.any()
    assert call(tokens.random_mask, count=3).mask.sum(1).tolist() == [3, 3]


@pytest.mark.parametrize("length", [2.5, None, "3"])
def test_frame_mask_length_must_be_an_int(length):
    with pytest.raises(TypeError, match="mask_length"):
        span_mask(torch.tensor([20, 20]), mask_prob=0.5, mask_length=length, keys=KEYS)
