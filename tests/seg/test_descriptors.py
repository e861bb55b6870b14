"""Text4Seg semantic descriptors, R-RLE text, and Text4Seg++ box bricks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
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


def text4seg_decode_mask(encoded):
    """Text4Seg's evaluation reader (llava/eval/utils.py decode_mask), re-typed: R-RLE -> the plain line."""
    out = []
    for row in encoded.strip("\n").split("\n "):
        for token in row.split("| "):
            label, count = token.split(" *")
            out.extend([label] * int(count))
    return "|".join(out)


def test_rrle_matches_text4seg_writer_on_a_real_mask():
    g = mask_to_grid(data.camera() > 128, 16, label="bright area")
    assert encode_descriptors(g) == f"<seg>{text4seg_encode_mask(g.tolist())}</seg>"


def test_exact_format_small_example():
    g = [["others", "others", "dog"], ["dog", "dog", "dog"]]
    assert encode_descriptors(g) == "<seg>others *2| dog *1\n dog *3\n</seg>"
    assert encode_descriptors(g, rle=False) == "<seg>others|others|dog|dog|dog|dog</seg>"


@pytest.mark.parametrize("grid", [16, 24, 32])
def test_majority_per_patch_and_exact_inverse(grid):
    rng = np.random.default_rng(grid)
    cells = rng.integers(0, 3, size=(grid, grid))
    label_map = np.kron(cells, np.ones((4, 4), int))
    flip = np.zeros((4, 4), bool)
    flip[0, :3] = True  # 3 of 16 pixels per patch take another class: still the minority
    label_map = np.where(np.tile(flip, (grid, grid)), (label_map + 1) % 3, label_map)
    names = ["others", "cat", "dog"]
    g = mask_to_grid(label_map, grid, label=names, resize="majority")
    assert np.array_equal(g, np.asarray(names)[cells])
    assert np.array_equal(grid_to_mask(g, label_map.shape, label=names), np.kron(cells, np.ones((4, 4), int)))


def test_majority_with_minority_pixels_and_ties():
    m = np.zeros((4, 4), bool)
    m[:2, :2] = [[1, 1], [1, 0]]  # 3 of 4: object
    m[:2, 2:] = [[1, 1], [0, 0]]  # 2 of 4: tie goes to background (smaller id)
    m[2:, :2] = [[1, 0], [0, 0]]  # 1 of 4: background
    g = mask_to_grid(m, 2, label="obj", resize="majority")
    assert g.tolist() == [["obj", "others"], ["others", "others"]]
    with pytest.raises(ValueError, match="smaller than grid 16"):
        mask_to_grid(np.zeros((10, 64)), 16, resize="majority")


@pytest.mark.parametrize("grid", [16, 24, 32])
def test_nearest_equals_pil_nearest_at_any_size(grid):
    """Text4Seg's data scripts: Image.fromarray(mask).resize((grid, grid), Image.NEAREST)."""
    rng = np.random.default_rng(grid)
    for H, W in [(100, 64), (97, 131), (13, 7), (480, 640), (1, 1), (333, 500)] + [
        tuple(int(v) for v in rng.integers(1, 900, 2)) for _ in range(10)
    ]:
        m = (rng.random((H, W)) < 0.5).astype(np.uint8)
        want = np.asarray(Image.fromarray(m).resize((grid, grid), Image.NEAREST)) > 0
        assert np.array_equal(mask_to_grid(m, grid, label="x") == "x", want), (H, W)
        ids = rng.integers(0, 300, (H, W)).astype(np.int32)  # a label map with ids past 255: PIL mode "I"
        want = np.asarray(Image.fromarray(ids, mode="I").resize((grid, grid), Image.NEAREST))
        names = [f"c{i}" for i in range(300)]
        assert np.array_equal(mask_to_grid(ids, grid, label=names), np.asarray(names)[want])


@pytest.mark.parametrize("grid", [16, 24, 32])
def test_grid_to_mask_equals_text4seg_upsampling(grid):
    """Text4Seg's evaluation: F.interpolate(pred.unsqueeze(0).unsqueeze(0).double(), size, mode='nearest')."""
    rng = np.random.default_rng(grid + 1)
    ids = rng.integers(0, 3, (grid, grid))
    names = np.asarray(["others", "cat", "dog"])
    for H, W in [(82, 94), (110, 122), (480, 640), (7, 5), (grid, grid), (2 * grid, 3 * grid + 1)]:
        want = F.interpolate(torch.from_numpy(ids)[None, None].double(), size=(H, W), mode="nearest")[0, 0].long()
        assert np.array_equal(grid_to_mask(names[ids], (H, W), label=list(names)), want.numpy()), (H, W)
        assert np.array_equal(grid_to_mask(names[ids], (H, W), label="dog"), want.numpy() == 2)


@pytest.mark.parametrize("grid", [16, 24, 32])
def test_exact_round_trip_where_the_grid_divides_the_size(grid):
    rng = np.random.default_rng(grid + 2)
    names = np.asarray(["others", "cat", "dog"])
    ids = rng.integers(0, 3, (grid, grid))
    g = names[ids]
    for k in (1, 2, 3, 5, 7, 20):
        size = (k * grid, (k + 1) * grid)
        pixels = grid_to_mask(g, size, label=list(names))
        assert np.array_equal(pixels, np.kron(ids, np.ones((k, k + 1), int)))  # each cell a k x (k + 1) block
        assert np.array_equal(mask_to_grid(pixels, grid, label=list(names)), g)
        assert np.array_equal(mask_to_grid(pixels, grid, label=list(names), resize="majority"), g)


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
    allowed = ["others", "dog", "brown dog", "the man on the left", "x"]
    d = decode_descriptors(encode_descriptors(g, rle=rle), labels=allowed, shape=g.shape)
    assert np.array_equal(d.grid, g) and d.repairs == ()
    lenient = decode_descriptors(encode_descriptors(g, rle=rle), strict=False, labels=allowed, shape=g.shape)
    assert np.array_equal(lenient.grid, g) and lenient.repairs == ()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(labels, min_size=n * n, max_size=n * n)))
def test_plain_line_is_what_text4seg_reads_out_of_rrle(cells):
    """The plain descriptors are the line Text4Seg's decode_mask makes of R-RLE; a square reads back without
    a shape."""
    n = int(len(cells) ** 0.5)
    g = np.asarray(cells, dtype=str).reshape(n, n)
    rrle = encode_descriptors(g)
    plain = encode_descriptors(g, rle=False)
    assert plain == "<seg>" + text4seg_decode_mask(rrle[5:-6]) + "</seg>"
    assert np.array_equal(decode_descriptors(plain).grid, g)


def test_plain_strict_and_lenient():
    assert decode_descriptors("Sure: <seg>a|b|b|a|a|b</seg>", shape=(2, 3)).grid.tolist() == [list("abb"), list("aab")]
    with pytest.raises(ValueError, match="hold 6 cells, not a square grid; give shape"):
        decode_descriptors("<seg>a|b|b|a|a|b</seg>")
    with pytest.raises(ValueError, match="hold 4 cells, expected 2x3"):
        decode_descriptors("<seg>a|b|b|a</seg>", shape=(2, 3))
    with pytest.raises(ValueError, match="malformed label ' b' in the plain descriptors at position 7"):
        decode_descriptors("<seg>a| b|b|a</seg>")
    with pytest.raises(ValueError, match="unknown label 'c' at position 9"):
        decode_descriptors("<seg>a|b|c|a</seg>", labels=["a", "b"])
    d = decode_descriptors("<seg>a| b||zebra|a", strict=False, labels=["a", "b"], shape=(2, 3))
    assert d.grid.tolist() == [["a", "b", "others"], ["a", "others", "others"]]
    assert any("empty cell" in r for r in d.repairs) and any("'zebra'" in r for r in d.repairs)
    assert any("padded 2 cells" in r for r in d.repairs) and any("</seg>" in r for r in d.repairs)
    d = decode_descriptors("<seg>a|a|a|a|a|a</seg>", strict=False)  # 6 cells: the 3x3 square that holds them
    assert d.grid.shape == (3, 3) and (d.grid == "others").sum() == 3
    d = decode_descriptors("<seg>a|a|a|a|a</seg>", strict=False, shape=(2, 2))
    assert d.grid.shape == (2, 2) and any("truncated 1" in r for r in d.repairs)


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
