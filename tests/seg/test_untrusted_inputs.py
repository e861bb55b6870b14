"""Model output and user input are untrusted: huge counts and wrong types are clear errors, never MemoryError."""

import numpy as np
import pytest

from masklab.seg.descriptors import decode_descriptors
from masklab.seg.rle import rle_decode, rle_encode

HUGE = "<seg>dog *99999999999\n</seg>"


def test_lenient_decoder_never_raises_on_a_huge_count():
    out = decode_descriptors(HUGE, strict=False)
    assert out.grid.shape[1] <= 4096 and any("exceeds" in r for r in out.repairs)
    out = decode_descriptors(HUGE, strict=False, shape=(1, 4))
    assert out.grid.shape == (1, 4) and (out.grid == "dog").all()


@pytest.mark.parametrize("shape", [None, (1, 4)])
def test_strict_decoder_raises_value_error_on_a_huge_count(shape):
    with pytest.raises(ValueError, match="cells"):
        decode_descriptors(HUGE, strict=True, shape=shape)


def test_rle_counts_beyond_the_image_are_a_value_error():
    good = rle_encode(np.eye(4, dtype=np.uint8))
    bad = {"size": [2, 2], "counts": good["counts"]}  # runs of a 4x4 mask for a 2x2 image
    with pytest.raises(ValueError):
        rle_decode(bad)


def test_rle_encode_none_names_the_argument():
    with pytest.raises(TypeError, match="mask"):
        rle_encode(None)
