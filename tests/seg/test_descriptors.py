"""Text4Seg semantic descriptors, R-RLE text, and Text4Seg++ box bricks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from masklab.seg.descriptors import (
    Brick,
    brick_to_mask,
    decode_bricks,
    decode_descriptors,
    encode_bricks,
    encode_descriptors,
    grid_to_mask,
    mask_to_brick,
    mask_to_grid,
)


def text4seg_encode_mask(rows):
    """Text4Seg's own row-wise RLE writer, re-typed from its data-script description as the oracle."""
    out = []
    for row in rows:
        runs, count = [], 1
        for j in range(1, len(row)):
            if row[j] == row[j - 1]:
                count += 1
            else:
                runs.append(f"{row[j - 1]} *{count}")
                count = 1
        runs.append(f"{row[-1]} *{count}")
        out.append("| ".join(runs))
    return "\n ".join(out) + "\n"


def test_rrle_matches_text4seg_writer_on_a_real_mask():
    g = mask_to_grid(data.camera() > 128, 16, label="bright area")
    assert encode_descriptors(g) == f"<seg>{text4seg_encode_mask(g.tolist())}</seg>"


def test_exact_format_small_example():
    g = [["others", "others", "dog"], ["dog", "dog", "dog"]]
    assert encode_descriptors(g) == "<seg>others *2| dog *1\n dog *3\n</seg>"
    assert encode_descriptors(g, rle=False) == "<seg>others| others| dog\n dog| dog| dog\n</seg>"


@pytest.mark.parametrize("grid", [16, 24, 32])
def test_majority_per_patch_and_exact_inverse(grid):
    rng = np.random.default_rng(grid)
    cells = rng.integers(0, 3, size=(grid, grid))
    label_map = np.kron(cells, np.ones((4, 4), int))
    flip = np.zeros((4, 4), bool)
    flip[0, :3] = True  # 3 of 16 pixels per patch take another class: still the minority
    label_map = np.where(np.tile(flip, (grid, grid)), (label_map + 1) % 3, label_map)
    names = ["others", "cat", "dog"]
    g = mask_to_grid(label_map, grid, label=names)
    assert np.array_equal(g, np.asarray(names)[cells])
    assert np.array_equal(grid_to_mask(g, label_map.shape, label=names), np.kron(cells, np.ones((4, 4), int)))


def test_majority_with_minority_pixels_and_ties():
    m = np.zeros((4, 4), bool)
    m[:2, :2] = [[1, 1], [1, 0]]  # 3 of 4: object
    m[:2, 2:] = [[1, 1], [0, 0]]  # 2 of 4: tie goes to background (smaller id)
    m[2:, :2] = [[1, 0], [0, 0]]  # 1 of 4: background
    g = mask_to_grid(m, 2, label="obj")
    assert g.tolist() == [["obj", "others"], ["others", "others"]]


def test_grid_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="does not divide"):
        mask_to_grid(np.zeros((100, 64)), 16)


def test_unknown_class_id_and_bad_labels_are_refused():
    with pytest.raises(ValueError, match="no name"):
        mask_to_grid(np.full((16, 16), 7), 16, label=["a", "b"])
    with pytest.raises(ValueError, match="label"):
        encode_descriptors([["a|b"]])


labels = st.sampled_from(["others", "dog", "brown dog", "the man on the left", "x"])


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 8).flatmap(lambda w: st.lists(st.lists(labels, min_size=w, max_size=w), min_size=1, max_size=8)),
    st.booleans(),
)
def test_rrle_roundtrip_property(rows, rle):
    g = np.asarray(rows, dtype=str)
    d = decode_descriptors(
        encode_descriptors(g, rle=rle), labels=["others", "dog", "brown dog", "the man on the left", "x"]
    )
    assert np.array_equal(d.grid, g) and d.repairs == ()


def test_strict_errors_name_the_position():
    good = "Sure. <seg>a *2| b *1\n a *3\n</seg>"
    assert decode_descriptors(good).grid.shape == (2, 3)
    with pytest.raises(ValueError, match="no '<seg>'"):
        decode_descriptors(good.replace("<seg>", "<sex>"))
    with pytest.raises(ValueError, match=r"row 1 at position 23 has 4 cells"):
        decode_descriptors("Sure. <seg>a *2| b *1\n a *4\n</seg>")
    with pytest.raises(ValueError, match=r"unknown label 'b' in row 0 at position 17"):
        decode_descriptors(good, labels=["a"])
    with pytest.raises(ValueError, match="newline"):
        decode_descriptors("<seg>a *3</seg>")
    with pytest.raises(ValueError, match="positive int"):
        decode_descriptors("<seg>a *0\n</seg>")
    with pytest.raises(ValueError, match="expected 3x3"):
        decode_descriptors(good, shape=(3, 3))


def test_lenient_repairs_and_reports():
    d = decode_descriptors("<seg>a *2| b\n a *4\n a\n", strict=False, shape=(4, 3), labels=["a", "b"])
    assert d.grid.tolist() == [["a", "a", "b"], ["a", "a", "a"], ["a", "others", "others"], ["others"] * 3]
    assert any("truncated 1" in r for r in d.repairs)
    assert any("padded 2 cells" in r for r in d.repairs)
    assert any("missing rows" in r for r in d.repairs)
    assert any("</seg>" in r for r in d.repairs)
    d = decode_descriptors("<seg>cat *x| zebra *2\n</seg>", strict=False, labels=["cat"])
    assert d.grid.tolist() == [["cat", "others", "others"]]
    assert len(d.repairs) == 2


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="ab *|\n<>segx/0123", max_size=60))
def test_fuzzed_text_only_raises_value_error(s):
    for text in (s, f"<seg>{s}</seg>"):
        try:
            d = decode_descriptors(text)
            assert d.grid.ndim == 2
        except ValueError:
            pass
        d = decode_descriptors(text, strict=False)  # lenient never raises
        assert d.grid.ndim == 2


def test_bricks_roundtrip_and_pixels():
    coins = data.coins() > 100
    m = np.zeros_like(coins)
    m[40:97, 30:61] = coins[40:97, 30:61]
    b = mask_to_brick(m, "coin", grid=8)
    assert b.box == tuple(
        int(v)
        for v in (
            np.nonzero(m.any(0))[0][0],
            np.nonzero(m.any(1))[0][0],
            np.nonzero(m.any(0))[0][-1] + 1,
            np.nonzero(m.any(1))[0][-1] + 1,
        )
    )
    text = encode_bricks([b, mask_to_brick(m.T, "coin 2", grid=4)])
    back = decode_bricks(text)
    assert back[0] == b and back[1].label == "coin 2"
    px = brick_to_mask(b, m.shape)
    assert not px[
        ~np.pad(
            np.ones((b.box[3] - b.box[1], b.box[2] - b.box[0]), bool),
            ((b.box[1], m.shape[0] - b.box[3]), (b.box[0], m.shape[1] - b.box[2])),
        )
    ].any()


def test_brick_of_full_box_and_tiny_box():
    m = np.zeros((20, 20), bool)
    m[3:9, 4:5] = True  # 6x1 box: grid shrinks to 6x1
    b = mask_to_brick(m, "stick", grid=16)
    assert b.cells.shape == (6, 1) and b.cells.all()
    assert np.array_equal(brick_to_mask(b, m.shape), m)
    with pytest.raises(ValueError, match="empty"):
        mask_to_brick(np.zeros((4, 4)), "x")
    with pytest.raises(ValueError, match="position"):
        decode_bricks("<p>x</p><box>[1, 2, 3]</box><seg>1 *1\n</seg>")
    assert decode_bricks("junk <p>x</p><box>[0, 0, 1, 1]</box><seg>1 *1\n</seg>", strict=False) == [
        Brick("x", (0, 0, 1, 1), np.ones((1, 1), bool))
    ]
