"""Digit strings: every glyph in an image is a real sample of its label's digit from the named split, labels follow
OpenOCR's dictionary order, rows pack and unpack exactly."""

import pytest
import torch

from masklab.data.digit_strings import EOS, PAD, DigitStrings
from masklab.data.digits import N_TRAIN, digits_images


def test_images_are_the_labelled_glyphs_of_their_split():
    world = DigitStrings(max_len=5, min_len=2, lexicon=40, seed=3, jitter=6)
    glyphs, digit = digits_images(8)
    for split, part in (("train", slice(0, N_TRAIN)), ("test", slice(N_TRAIN, None))):
        images, labels = world.sample(25, split, seed=0)
        assert images.shape == (25, 1, 8, 46) and labels.shape == (25, 6)
        banks = [glyphs[part, 0][digit[part] == d] for d in range(10)]  # the split's samples of each digit
        for img, lab in zip(images[:, 0], labels, strict=True):
            k = int((lab != PAD).sum()) - 1  # characters before the EOS
            assert lab[k] == EOS and (lab[:k] >= 1).all() and (lab[:k] <= 10).all() and (lab[k + 1 :] == PAD).all()
            # the word starts within the jitter, each 8-pixel block is one of the split's samples of its digit, and
            # nothing else is drawn
            starts = [x for x in range(7) if all(_is_glyph(img[:, x + 8 * j : x + 8 * j + 8], banks[int(lab[j]) - 1])
                                                 for j in range(k))]  # fmt: skip
            assert starts, (split, lab)
            x = starts[0]
            assert img[:, :x].abs().sum() == 0 and img[:, x + 8 * k :].abs().sum() == 0


def _is_glyph(block, bank) -> bool:
    return bool(((bank - block).abs().amax(dim=(1, 2)) == 0).any())


def test_lexicon_words_and_uniform_strings():
    world = DigitStrings(max_len=6, min_len=3, lexicon=5, seed=1)
    _, labels = world.sample(300, "train", seed=4)
    assert len({tuple(r.tolist()) for r in labels}) <= 5  # drawn from five words
    _, test_labels = world.sample(300, "test", seed=4)
    assert {tuple(r.tolist()) for r in test_labels} == {tuple(r.tolist()) for r in labels}  # the same five words
    free = DigitStrings(max_len=6, min_len=3, lexicon=0, seed=1)
    _, labels = free.sample(300, "train", seed=4)
    assert len({tuple(r.tolist()) for r in labels}) > 250


def test_pack_round_trip_and_errors():
    world = DigitStrings(max_len=4, min_len=1, lexicon=0)
    images, labels = world.sample(10, "train", seed=0)
    rows = world.pack(images, labels)
    back_images, back_labels = world.unpack(rows)
    assert torch.equal(back_images, images) and torch.equal(back_labels, labels)
    with pytest.raises(ValueError, match="packed rows"):
        world.unpack(rows[:, :-1])
    with pytest.raises(ValueError, match="split"):
        world.sample(3, "valid", seed=0)
    with pytest.raises(ValueError, match="min_len"):
        DigitStrings(max_len=2, min_len=3)
