"""masklab.seg.rle against pycocotools (the C reference), byte for byte."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco
from skimage import data

from masklab.seg.rle import Runs, area, bbox, iou, merge, merge_groups, rle_decode, rle_encode


def coco_rle(m: np.ndarray) -> dict:
    return coco.encode(np.asfortranarray(m.astype(np.uint8)))


def real_masks() -> list[np.ndarray]:
    camera, coins, horse = data.camera(), data.coins(), data.horse()
    return [
        camera > 128,
        camera < 40,
        coins > 100,
        ~horse.astype(bool),
        data.checkerboard() > 127,
        data.binary_blobs(length=96, rng=0),
    ]


def edge_masks() -> list[np.ndarray]:
    one = np.zeros((5, 7), bool)
    one[2, 3] = True
    corner_first, corner_last = np.zeros((4, 6), bool), np.zeros((4, 6), bool)
    corner_first[0, 0], corner_last[-1, -1] = True, True
    return [
        np.zeros((0, 0), bool),
        np.zeros((3, 0), bool),
        np.zeros((4, 5), bool),
        np.ones((4, 5), bool),
        np.zeros((1, 1), bool),
        np.ones((1, 1), bool),
        one,
        corner_first,
        corner_last,
        np.ones((1, 300), bool),
        np.eye(37, 5, dtype=bool),
        np.ones((3000, 2), bool),
    ]


def random_masks(n=12) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        out.append(rng.random((h, w)) < [0.02, 0.5, 0.98][i % 3])
    return out


ALL = edge_masks() + random_masks() + real_masks()


@pytest.mark.parametrize("m", ALL, ids=lambda m: f"{m.shape}")
def test_encode_is_byte_identical_to_pycocotools(m):
    ref = coco_rle(m)
    ours = rle_encode(m)
    assert ours["counts"] == ref["counts"].decode("ascii")
    assert ours["size"] == list(ref["size"])
    assert rle_encode(torch.from_numpy(m)) == ours  # torch path finds the same runs


@pytest.mark.parametrize("m", ALL, ids=lambda m: f"{m.shape}")
def test_decode_area_bbox_match_pycocotools(m):
    ref = coco_rle(m)
    assert np.array_equal(rle_decode(ref), coco.decode(ref).astype(bool))  # bytes counts accepted
    assert np.array_equal(rle_decode(rle_encode(m)), m)
    assert area(rle_encode(m)) == coco.area(ref)
    assert np.array_equal(bbox(rle_encode(m)), coco.toBbox(ref))


def test_batched_matches_pycocotools_and_torch():
    rng = np.random.default_rng(1)
    ms = rng.random((6, 33, 21)) < 0.3
    ms[0] = False
    ms[1] = True
    refs = coco.encode(np.asfortranarray(ms.transpose(1, 2, 0).astype(np.uint8)))
    ours = rle_encode(ms)
    assert [r["counts"] for r in ours] == [r["counts"].decode() for r in refs]
    assert rle_encode(torch.from_numpy(ms)) == ours
    assert np.array_equal(rle_decode(ours), ms)
    assert torch.equal(rle_decode(ours, device="cpu"), torch.from_numpy(ms))
    assert np.array_equal(area(ours), coco.area(refs))
    assert np.array_equal(bbox(ours), coco.toBbox(refs))


def test_dense_and_sparse_change_paths_agree():
    rng = np.random.default_rng(2)
    noisy = rng.random((2, 40, 50)) < 0.5  # many changes: transpose path
    smooth = np.zeros((2, 40, 50), bool)
    smooth[:, 5:30, 10:44] = True  # few changes: sort path
    for ms in (noisy, smooth):
        refs = coco.encode(np.asfortranarray(ms.transpose(1, 2, 0).astype(np.uint8)))
        assert [r["counts"] for r in rle_encode(ms)] == [r["counts"].decode() for r in refs]


@pytest.mark.parametrize("crowd", [[0, 0, 0, 0], [1, 0, 1, 0]])
def test_iou_matches_pycocotools_including_crowd(crowd):
    rng = np.random.default_rng(3)
    base = np.zeros((30, 40), bool)
    base[5:20, 8:30] = True
    dt = [base, np.roll(base, 3, 0), rng.random((30, 40)) < 0.3, np.zeros((30, 40), bool)]
    gt = [base, base[::-1], np.roll(base, 5, 1), np.zeros((30, 40), bool)]
    ref = coco.iou([coco_rle(m) for m in dt], [coco_rle(m) for m in gt], crowd)
    ours = iou([rle_encode(m) for m in dt], [rle_encode(m) for m in gt], crowd)
    assert np.array_equal(ours, ref)


def test_merge_matches_pycocotools():
    rng = np.random.default_rng(4)
    ms = [rng.random((25, 17)) < p for p in (0.2, 0.5, 0.7)]
    refs, ours = [coco_rle(m) for m in ms], [rle_encode(m) for m in ms]
    for intersect in (False, True):
        assert merge(ours, intersect)["counts"] == coco.merge(refs, intersect)["counts"].decode()
    groups = merge_groups([ours[:2], ours[1:], ours[:1]])
    assert [g["counts"] for g in groups] == [
        coco.merge(refs[:2])["counts"].decode(),
        coco.merge(refs[1:])["counts"].decode(),
        ours[0]["counts"],
    ]


@settings(max_examples=50, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(0, 24), st.integers(0, 24))))
def test_roundtrip_and_parity_property(m):
    r = rle_encode(m)
    assert np.array_equal(rle_decode(r), m)
    assert r["counts"] == coco_rle(m)["counts"].decode()
    assert area(r) == int(m.sum())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**31), min_size=1, max_size=40))
def test_any_counts_survive_the_string_codec(counts):
    """Huge and tiny counts, including negative deltas, round-trip through the LEB128-like text."""
    from masklab.seg.rle import _counts_to_strings, _strings_to_counts

    c = np.asarray(counts, dtype=np.int64)
    (s,) = _counts_to_strings(c, np.array([0, len(c)]))
    assert np.array_equal(_strings_to_counts([s.encode()])[0], c)
    # pycocotools compresses the same counts (given uncompressed) to the same string. The oracle only sees counts
    # below 2**24: with counts of a few 1e7 its frPyObjects/rleToString crashes the process ("free(): invalid
    # pointer", seen here with 20000 random lists), so larger counts are checked by the round trip above only.
    c = c % 2**24
    (s,) = _counts_to_strings(c, np.array([0, len(c)]))
    size = [int(c.sum()), 1]
    ref = coco.frPyObjects({"size": size, "counts": [int(v) for v in c]}, *size)
    assert ref["counts"].decode() == s


def test_bad_rles_raise_clear_errors():
    with pytest.raises(ValueError, match="sum to"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="sum to"):
        rle_decode({"size": [4, 4], "counts": "0<"})
    with pytest.raises(ValueError, match="invalid character"):
        rle_decode({"size": [2, 2], "counts": "0 4"})
    with pytest.raises(ValueError, match="invalid character"):
        rle_decode({"size": [1, 15], "counts": "\u00e9"})  # not read as '?' (a valid char)
    with pytest.raises(ValueError, match="ends inside a value"):
        rle_decode({"size": [2, 2], "counts": "4P"})
    with pytest.raises(ValueError, match="negative"):
        rle_decode({"size": [2, 2], "counts": [5, -1]})
    with pytest.raises(ValueError, match="size"):
        rle_decode({"size": [2], "counts": "4"})
    with pytest.raises(ValueError, match="one size"):
        iou([rle_encode(np.zeros((2, 2)))], [rle_encode(np.zeros((3, 2)))])
    with pytest.raises(ValueError):
        rle_encode(np.zeros(5))


@settings(max_examples=50, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=200), max_size=30),
    st.integers(0, 6),
    st.integers(0, 6),
)
def test_fuzzed_counts_only_raise_value_error(s, h, w):
    try:
        m = rle_decode({"size": [h, w], "counts": s})
    except ValueError:
        return
    assert m.shape == (h, w)
    assert rle_decode(rle_encode(m)).shape == (h, w)


def test_torch_device_scan_matches_numpy_scan():
    """The column-major scan used for tensors on an accelerator finds the same change positions (run here on
    CPU) as the numpy C-order scan, and both give pycocotools' runs."""
    from masklab.seg.rle import _changes_numpy, _changes_torch

    rng = np.random.default_rng(5)
    batches = [m[None] for m in ALL if m.size] + [rng.random((5, 19, 23)) < p for p in (0.05, 0.5)]
    for ms in batches:
        assert np.array_equal(_changes_torch(torch.from_numpy(ms)), _changes_numpy(ms))


def test_chunked_scan_with_stale_padding_matches_pycocotools(monkeypatch):
    """Tiny chunks force many passes through one reused scratch buffer (odd sizes leave stale padding bytes);
    the result still equals pycocotools mask by mask, for sparse, dense and all-constant masks."""
    import masklab.seg.rle as rle

    rng = np.random.default_rng(6)
    ms = rng.random((9, 30, 41)) < np.array([0.0, 1.0, 0.5, 0.02, 0.5, 0.98, 0.3, 1.0, 0.0])[:, None, None]
    ms[8, 4:20, 9:30] = True  # sparse changes after an all-ones mask: a stale padding byte would add a run
    refs = coco.encode(np.asfortranarray(ms.transpose(1, 2, 0).astype(np.uint8)))
    want = [r["counts"].decode() for r in refs]
    for chunk in (1, 2500, 1 << 21):  # 1 byte: one mask per chunk; 2500: two (1230 bytes each); default: all
        monkeypatch.setattr(rle, "_CHUNK_BYTES", chunk)
        assert [r["counts"] for r in rle_encode(ms)] == want
        assert [r["counts"] for r in rle_encode(ms.astype(np.float32))] == want  # nonzero = foreground


def test_mixed_batch_decode_matches_pycocotools():
    """One decode call with str, bytes and list counts, one-char-per-value strings (noise) and strings with
    long values, equals pycocotools' decode of each."""
    rng = np.random.default_rng(7)
    ms = [rng.random((40, 30)) < 0.5, np.zeros((40, 30), bool), np.ones((40, 30), bool), rng.random((40, 30)) < 0.01]
    refs = [coco_rle(m) for m in ms]
    mixed = [
        {"size": refs[0]["size"], "counts": refs[0]["counts"].decode()},
        refs[1],
        {"size": [40, 30], "counts": [0, 1200]},
        refs[3],
    ]
    want = np.stack([coco.decode(r).astype(bool) for r in refs])
    assert np.array_equal(rle_decode(mixed), want)
    assert np.array_equal(area(mixed), want.reshape(4, -1).sum(1))
    assert np.array_equal(bbox(mixed), coco.toBbox(refs))


def test_oversized_count_is_a_clear_error():
    with pytest.raises(ValueError, match="more than its size 2x2"):
        rle_decode({"size": [2, 2], "counts": [0, 2**62, 4]})


def runs_and_masks(seed: int, n: int = 30, shape=(19, 23)):
    """Masks of every kind (noise, blocks, empty, full) with their Runs and pycocotools RLEs."""
    rng = np.random.default_rng(seed)
    ms = []
    for k in range(n):
        m = np.zeros(shape, bool)
        if k % 4 == 0:
            m = rng.random(shape) < rng.choice([0.05, 0.5, 0.95])
        elif k % 4 == 1:
            y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            m[y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = True
        elif k % 4 == 2:
            m[:] = k % 8 == 2
        else:
            m[:, rng.integers(0, shape[1])] = True  # one full column: runs that touch column ends
        ms.append(m)
    return Runs.of(rle_encode(np.stack(ms))), ms, [coco_rle(m) for m in ms]


def test_runs_measures_match_pycocotools():
    runs, ms, refs = runs_and_masks(8)
    assert np.array_equal(runs.area(), coco.area(refs))
    assert np.array_equal(runs.bbox(), coco.toBbox(refs))
    for m, (first, last) in zip(ms, runs.columns(), strict=True):
        cols = np.flatnonzero(m.any(0))
        assert (first, last) == ((cols[0], cols[-1]) if len(cols) else (-1, -1))
    assert [r["counts"] for r in runs.to_rles()] == [r["counts"].decode() for r in refs]
    picked = Runs.concat([runs.take([4, 1]), runs.take([]), runs.take([7])])
    assert [r["counts"] for r in picked.to_rles()] == [refs[k]["counts"].decode() for k in (4, 1, 7)]


def test_bbox_of_uncompressed_counts_with_empty_runs_follows_rletobbox():
    """pycocotools 2.x's rleToBbox skips zero-length foreground runs (cocoapi 1.0's counted a background
    pixel there)."""
    rles = [{"size": [4, 5], "counts": c} for c in ([3, 0, 4, 2, 11], [0, 0, 6, 1, 13], [7, 2, 0, 0, 11])]
    refs = [coco.frPyObjects(r, 4, 5) for r in rles]
    assert np.array_equal(Runs.of(rles).bbox(), coco.toBbox(refs))


def test_pair_intersections_equal_pixel_counts_and_pycocotools_iou():
    runs, ms, refs = runs_and_masks(9)
    rng = np.random.default_rng(10)
    i, j = rng.integers(0, len(ms), 400), rng.integers(0, len(ms), 400)
    inter = runs.intersections(i, j)
    assert np.array_equal(inter, [(ms[a] & ms[b]).sum() for a, b in zip(i, j, strict=True)])
    a = runs.area()
    union = a[i] + a[j] - inter
    ours = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    want = np.array([coco.iou([refs[p]], [refs[q]], [0])[0, 0] for p, q in zip(i, j, strict=True)])
    assert np.array_equal(ours, want)


def test_union_equals_pycocotools_merge_across_sizes():
    small, ms_small, refs_small = runs_and_masks(11, 12, (7, 9))
    big, ms_big, refs_big = runs_and_masks(12, 12, (19, 23))
    both = Runs.concat([small, big])
    rng = np.random.default_rng(13)
    group = np.r_[rng.permutation(np.arange(12) % 4), 4 + rng.permutation(np.arange(12) % 5)]
    merged = both.union(group).to_rles()
    refs = refs_small + refs_big
    for g in range(9):
        want = coco.merge([refs[k] for k in np.flatnonzero(group == g)])
        assert merged[g]["counts"] == want["counts"].decode() and merged[g]["size"] == list(want["size"])
    with pytest.raises(ValueError, match="share one size"):
        both.union(np.zeros(24, int))
    with pytest.raises(ValueError, match="pair 0 has masks of sizes"):
        both.intersections([0], [12])
