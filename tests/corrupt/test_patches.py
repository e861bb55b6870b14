"""Patch masks: exact counts, MAE index conventions, BEiT block statistics, ColorMAE banks (spectra, no
wrap-around, reference crop normalisation), OneRef's region-driven counts, bad inputs."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from masklab.corrupt import _select, keyed
from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH

GRID = (14, 14)
N = 196


# the inputs a strategy needs besides the grid and the keys
NEEDS = {
    "hpm": lambda batch, grid: {
        "pred_loss": torch.rand(batch, grid[0] * grid[1], generator=torch.Generator().manual_seed(1))
    },
    "referring": lambda batch, grid: {"boxes": [[2, 3, 9, 12]] * batch, "ratio": P.ONEREF_OUTSIDE},
    "simmim": lambda batch, grid: {"cell": 2},
}


def _make(name, grid=GRID, batch=64, **kw):
    keys = keyed.train_keys(3, 0, torch.arange(batch))  # what seed=3 means: examples 0..B-1 of epoch 0
    return PATCH.get(name)(grid, keys, **NEEDS.get(name, lambda b, g: {})(batch, grid), **kw)


@pytest.mark.parametrize("name", PATCH.names())
def test_every_strategy_masks_the_same_exact_count_in_every_row(name):
    pm = _make(name)
    counts = pm.mask.sum(1)
    assert pm.mask.dtype == torch.bool and pm.mask.shape == (64, N)
    assert bool((counts == counts[0]).all())
    # referring: the 7 x 9 box grown by one patch is 9 x 11 = 99 patches at gamma 0.75, the other 97 at beta 0.35
    referring = 99 - int(99 * 0.25) + 97 - int(97 * 0.65)
    expected = {"block": round(0.4 * N), "simmim": math.ceil(0.6 * 49) * 4, "referring": referring}
    assert int(counts[0]) == expected.get(name, N - int(N * 0.25))


@pytest.mark.parametrize("name", PATCH.names())
def test_ids_follow_mae_unshuffle_convention(name):
    pm = _make(name, batch=8)
    K = N - pm.num_masked
    keep = pm.ids_keep
    assert keep.shape == (8, K) and not pm.mask.gather(1, keep).any()
    # MAE decoder: x = cat(visible, masked) then gather by ids_restore puts every patch back at its index
    x = pm.ids_shuffle
    assert torch.equal(x.gather(1, pm.ids_restore), torch.arange(N).expand(8, N))
    assert torch.equal(torch.argsort(pm.noise(), 1)[:, :K].sort(1).values, keep)


def test_noise_reproduces_the_mask_in_hugging_face_vitmae():
    from transformers import ViTMAEConfig, ViTMAEModel

    pm = P.random_patches((4, 4), 0.75, batch=3, seed=0)
    cfg = ViTMAEConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        mask_ratio=0.75,
    )
    out = ViTMAEModel(cfg).eval()(torch.zeros(3, 1, 8, 8), noise=pm.noise())
    assert torch.equal(out.mask.bool(), pm.mask)


def test_random_is_uniform_and_keyed_per_example():
    pm = P.random_patches(GRID, 0.75, batch=4000, seed=0)
    freq = pm.mask.float().mean(0)  # each patch masked w.p. 147/196
    assert (freq - 147 / 196).abs().max() < 5 * math.sqrt(0.75 * 0.25 / 4000)
    keys = keyed.example_keys(5, 2, torch.tensor([10, 11, 12]))
    a = P.random_patches(GRID, keys=keys).mask
    b = P.random_patches(GRID, keys=keys[1:]).mask
    assert torch.equal(a[1:], b)  # a row depends on its own key, not on the batch
    assert not torch.equal(a[0], a[1])


def test_generator_seed_is_reproducible():
    a = P.random_patches(GRID, batch=4, seed=torch.Generator().manual_seed(7)).mask
    b = P.random_patches(GRID, batch=4, seed=torch.Generator().manual_seed(7)).mask
    assert torch.equal(a, b) and int(a.sum(1)[0]) == 147


def test_keyed_stream_behind_patch_masks_is_uniform():
    u = keyed.uniform(torch.arange(200), 500)  # the stream behind every keyed patch mask
    assert 0 <= float(u.min()) and float(u.max()) < 1
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (hist - 0.1).abs().max() < 0.004
    assert abs(torch.corrcoef(torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()]))[0, 1]) < 0.01


def test_beit_blocks_respect_min_area_and_aspect_range():
    keys = keyed.example_keys(0, 0, torch.arange(2000))
    top, left, h, w = P.beit_blocks(keys, GRID, 8, min_block=16, max_block=75, min_aspect=0.3)
    ok = h > 0
    assert ok.float().mean() > 0.8  # most candidates fit a 14x14 grid
    h, w, top, left = h[ok].double(), w[ok].double(), top[ok], left[ok]
    # rounding sqrt(A*a), sqrt(A/a) moves each side by at most 0.5
    assert bool(((h + 0.5) * (w + 0.5) >= 16).all())
    assert bool((h / w).ge(0.3 * 0.5).all() and (h / w).le(1 / 0.3 * 2).all())
    assert bool(((top + h) <= 14).all() and ((left + w) <= 14).all())
    # log aspect ratio is uniform on [log 0.3, log 1/0.3]: its mean is ~0 and it fills both halves
    la = torch.log(h / w)
    assert abs(float(la.mean())) < 0.05 and float((la > 0).float().mean()) == pytest.approx(0.5, abs=0.04)


def test_block_masks_are_made_of_blocks_and_rarely_need_random_fill():
    pm = P.block_patches(GRID, 0.4, batch=500, seed=1)
    img = pm.image().float()
    # block masks are spatially clumped: most masked patches have a masked 4-neighbour
    nb = torch.nn.functional.max_pool2d(img[:, None], 3, 1, 1)[:, 0]  # any masked in 3x3
    pad = torch.nn.functional.pad(img, (1, 1, 1, 1))
    four = pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
    isolated = (img > 0) & (four == 0)
    assert float(isolated.sum() / img.sum()) < 0.01
    assert bool((nb >= img).all())
    # reference: with target = min = max = 16 the mask is the first fitting candidate block, cut in raster
    # order
    keys = keyed.example_keys(0, 0, torch.arange(100))
    one = P.block_patches((8, 8), 16 / 64, min_block=16, max_block=16, keys=keys).image()
    top, left, h, w = P.beit_blocks(keys, (8, 8), 32, min_block=16, max_block=16)
    checked = 0
    for b in range(100):
        i = int((h[b] > 0).nonzero()[0, 0])
        if h[b, i] * w[b, i] < 16:
            continue
        ref = torch.zeros(8, 8, dtype=torch.bool)
        ref[top[b, i] : top[b, i] + h[b, i], left[b, i] : left[b, i] + w[b, i]] = True
        ref.view(-1)[ref.view(-1).cumsum(0) > 16] = False
        assert torch.equal(one[b], ref)
        checked += 1
    assert checked > 25


def test_simmim_masks_whole_cells():
    pm = P.simmim_patches((8, 8), 0.6, cell=4, batch=32, seed=0)
    cells = pm.image().view(32, 2, 4, 2, 4).float().mean((2, 4))
    assert bool(((cells == 0) | (cells == 1)).all())
    assert bool((cells.sum((1, 2)) == math.ceil(0.6 * 4)).all())


def _band_power(x, grid):
    """Share of spectral power in low / mid / high radial frequency bands, averaged over rows."""
    H, W = grid
    x = x.view(-1, H, W).double()
    x = x - x.mean((1, 2), keepdim=True)
    return _band_share(torch.fft.fft2(x).abs().pow(2).mean(0), grid)


def _band_share(psd, grid, edges=(0.15, 0.35)):
    H, W = grid
    f = (torch.fft.fftfreq(H)[:, None] ** 2 + torch.fft.fftfreq(W)[None, :] ** 2).sqrt()
    bands = [(f > 0) & (f < edges[0]), (f >= edges[0]) & (f < edges[1]), f >= edges[1]]
    tot = psd[f > 0].sum()
    return torch.stack([psd[b].sum() / tot for b in bands])


@pytest.mark.parametrize("color", P.COLORS)
def test_colormae_bank_has_the_spectrum_of_its_filter(color):
    """White noise filtered by a kernel with response H has autocorrelation R = IDFT(|H|^2) (ColorMAE Sec. 3.1),
    so the mean periodogram of an S x S window is the DFT of R times the Bartlett weights
    (1 - |dx|/S)(1 - |dy|/S): the bank's band shares match it. And the colours are what the paper names them: red
    low-pass, blue high-pass, green band-pass (its power peaks at mid frequencies), purple band-stop, white flat."""
    bank = P.noise_bank(color).double()  # (L, 64, 64)
    S = bank.shape[-1]
    psd = torch.fft.fft2(bank).abs().pow(2).mean(0)  # the DC bin is left out of every band below
    R = torch.fft.ifft2(P.noise_response(color, S).pow(2)).real  # kernel support 17 < S/2: no aliasing
    lag = (torch.fft.fftfreq(S) * S).abs()
    expected = torch.fft.fft2(R * (1 - lag[:, None] / S) * (1 - lag[None, :] / S)).real
    assert torch.allclose(_band_share(psd, (S, S), (0.1, 0.3)), _band_share(expected, (S, S), (0.1, 0.3)), atol=0.005)
    f = (torch.fft.fftfreq(S)[:, None] ** 2 + torch.fft.fftfreq(S)[None, :] ** 2).sqrt()
    low, mid, high = (float(psd[m].mean()) for m in ((f > 0) & (f < 0.08), (f >= 0.15) & (f < 0.25), f >= 0.4))
    if color == "white":
        assert max(low, mid, high) < 1.1 * min(low, mid, high)
    if color == "red":
        assert low > 20 * mid > 20 * high
    if color == "blue":
        assert high > 3 * mid > 3 * low
    if color == "green":
        assert mid > 5 * low and mid > 5 * high
    if color == "purple":
        assert mid < 0.5 * low and mid < 0.5 * high


def test_colormae_crops_do_not_wrap_around():
    """A crop of a linearly filtered bank has no wrap-around: its opposite edges are as unrelated as any two
    patches 13 apart, while neighbours are strongly correlated. Circulant filtering on the grid makes the
    opposite edges neighbours (correlation ~0.9)."""
    x = P.colored_noise(GRID, "red", batch=3000, seed=0).view(-1, *GRID)

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    for first, second, last in ((x[:, :, 0], x[:, :, 1], x[:, :, -1]), (x[:, 0], x[:, 1], x[:, -1])):
        assert corr(first, second) > 0.8
        assert abs(corr(first, last)) < 0.25


def test_colormae_windows_follow_the_reference_crop():
    """Each window is divided by its maximum (reference ``NormalizeBySliceMax``), depends on its own key only, and
    is an H x W crop of one bank slice, possibly flipped."""
    keys = keyed.example_keys(4, 1, torch.arange(300))
    x = P.colored_noise((3, 4), "green", keys=keys)
    assert torch.allclose(x.amax(1), torch.ones(300))
    assert torch.equal(P.colored_noise((3, 4), "green", keys=keys[7:9]), x[7:9])
    bank = P.noise_bank("green")
    windows = bank.unfold(1, 3, 1).unfold(2, 4, 1)  # (L, 62, 61, 3, 4): every 3 x 4 crop of every slice
    row = x[0].view(3, 4)
    found = False
    for w in (row, row.flip(0), row.flip(1), row.flip(0).flip(1)):
        hit = windows / windows.amax((-2, -1), keepdim=True) - w
        found |= bool((hit.abs().amax((-2, -1)) < 1e-5).any())
    assert found


def test_colormae_masks_keep_the_color_of_their_noise():
    share = {c: _band_power(P.colormae_patches(GRID, c, 0.75, batch=2000, seed=0).mask.float(), GRID) for c in P.COLORS}
    low, mid, high = 0, 1, 2
    assert share["red"][low] > 5 * share["white"][low]  # red: blobs
    assert share["blue"][high] > share["white"][high] + 0.05  # blue: dispersed
    assert share["blue"][low] < 0.7 * share["white"][low]
    assert share["green"][mid] > share["white"][mid] + 0.1  # green: band-pass
    assert share["purple"][mid] < share["white"][mid] - 0.03  # purple: band-stop
    assert share["green"][mid] == max(s[mid] for s in share.values())


def test_hpm_masks_the_hardest_patches_first():
    loss = torch.rand(32, N, generator=torch.Generator().manual_seed(0))
    for progress in (0.0, 0.4, 1.0):
        pm = P.hpm_patches(loss, GRID, 0.75, progress=progress, seed=1)
        n_hard = int(147 * 0.5 * progress)
        top = loss.topk(max(n_hard, 1), 1).indices
        if n_hard:
            assert bool(pm.mask.gather(1, top).all())
    # easy-to-hard: the mean predicted loss of masked patches rises with progress
    means = [
        float((loss * P.hpm_patches(loss, GRID, progress=p, seed=1).mask).sum() / (32 * 147)) for p in (0.0, 0.5, 1.0)
    ]
    assert means[0] < means[1] < means[2]
    assert P.hpm_alpha(0.5) == pytest.approx(0.25)


def test_referring_counts_follow_the_region():
    """OneRef's dynamic masking (Sec. 3.2, Algorithm 1; reference ``Dynamic_MIM_MaskGenerator``): the box grown
    by one patch (clipped) masks gamma = 0.75 of its patches, the rest of the image beta = 0.35, so the total, and
    the overall ratio alpha, follows the size of the referred region."""
    boxes = torch.tensor([[0.0, 0.0, 56.0, 56.0], [28.0, 56.0, 112.0, 112.0], [48.0, 48.0, 64.0, 64.0]])
    region = P.region_from_boxes(boxes, GRID, image_size=(112, 112))  # 8 px patches
    assert [int(r.sum()) for r in region] == [49, 77, 4]
    pm = P.referring_patches(GRID, boxes=boxes, image_size=(112, 112), seed=0)
    # the reference grows the box (in patches) by a margin of 1 and clips it to the grid
    grown = torch.zeros(3, 14, 14, dtype=torch.bool)
    for b, (x0, y0, x1, y1) in enumerate([(0, 0, 7, 7), (3, 7, 14, 14), (6, 6, 8, 8)]):
        grown[b, max(y0 - 1, 0) : min(y1 + 1, 14), max(x0 - 1, 0) : min(x1 + 1, 14)] = True
    inside = grown.view(3, -1)
    n_in = inside.sum(1)
    assert n_in.tolist() == [64, 96, 16]
    want_in = [n - int(n * (1 - 0.75)) for n in n_in.tolist()]
    want_out = [(N - n) - int((N - n) * (1 - 0.35)) for n in n_in.tolist()]
    assert (pm.mask & inside).sum(1).tolist() == want_in
    assert (pm.mask & ~inside).sum(1).tolist() == want_out
    totals = pm.mask.sum(1)
    assert totals.tolist() == [a + b for a, b in zip(want_in, want_out, strict=True)] and len(set(totals.tolist())) == 3
    assert not pm.even
    # a region covering everything is masked at gamma throughout
    full = torch.ones(1, 14, 14, dtype=torch.bool)
    assert int(P.referring_patches(GRID, full, seed=0).mask.sum()) == N - int(N * 0.25)


def test_referring_draws_uniformly_in_each_part_and_per_key():
    region = torch.zeros(4000, 14, 14, dtype=torch.bool)
    region[:, 4:8, 5:10] = True  # grown: rows 3..8, columns 4..10 -> 42 patches
    pm = P.referring_patches(GRID, region, seed=3)
    inside = P._grow(region, 1).view(4000, -1)
    freq = pm.mask.float().mean(0)
    k_in, k_out = 42 - int(42 * 0.25), 154 - int(154 * 0.65)
    sd = math.sqrt(0.25 / 4000)
    assert (freq[inside[0]] - k_in / 42).abs().max() < 5 * sd
    assert (freq[~inside[0]] - k_out / 154).abs().max() < 5 * sd
    keys = keyed.example_keys(2, 0, torch.arange(6))
    a = P.referring_patches(GRID, region[:6], keys=keys).mask
    assert torch.equal(P.referring_patches(GRID, region[2:4], keys=keys[2:4]).mask, a[2:4])


def test_uneven_rows_are_padded_for_the_encoder():
    mask = torch.tensor([[True, False, False, True], [True, True, True, False], [False, False, False, False]])
    ids, valid = P.PatchMask(mask, (2, 2)).visible()
    assert valid.tolist() == [[True, True, False, False], [True, False, False, False], [True, True, True, True]]
    assert ids[valid].tolist() == [1, 2, 3, 0, 1, 2, 3]
    even = P.random_patches((4, 4), 0.5, batch=3, seed=0)
    ids, valid = even.visible()
    assert valid is None and torch.equal(ids, even.ids_keep)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: P.random_patches(GRID, 1.5, batch=2), "ratio must be in"),
        (lambda: P.random_patches(GRID, -0.1, batch=2), "ratio must be in"),
        (lambda: P.block_patches((4, 4), 0.5, batch=2, min_block=20), "min_block 20"),
        (lambda: P.block_patches((2, 14), 0.5, batch=2, min_block=16, min_aspect=0.9), "does not fit"),
        (lambda: P.simmim_patches((6, 6), 0.5, batch=2, cell=8), "cell 8"),
        (lambda: P.referring_patches(GRID, boxes=[[0, 0, 20, 5]]), r"box \[0.0, 0.0, 20.0, 5.0\] is outside"),
        (lambda: P.referring_patches(GRID, boxes=[[-1, 0, 2, 5]]), "is outside"),
        (lambda: P.referring_patches(GRID, boxes=[[0, 0, 2, 5]], margin=-1), "margin must be"),
        (lambda: P.referring_patches(GRID, boxes=[[0, 0, 2, 5]], inside_ratio=1.5), "inside_ratio must be in"),
        (lambda: P.colormae_patches(GRID, "pink", batch=2), "unknown noise color 'pink'"),
        (lambda: P.hpm_patches(torch.rand(2, 10), GRID), r"pred_loss must be \[B, 196\]"),
        (lambda: P.random_patches((0, 3), batch=2), "positive sides"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_uneven_rows_have_no_ids_keep():
    pm = P.PatchMask(torch.tensor([[True, False], [True, True]]), (1, 2))
    with pytest.raises(ValueError, match="different numbers"):
        _ = pm.ids_keep


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.data())
def test_smallest_k_is_a_stable_sort_cut_on_every_path(B, N, data):
    """smallest_k picks the k smallest per row (one k, or one per row), ties to the earlier position (a stable
    argsort's first k), and the numpy (CPU) and torch (other devices) paths agree, ties included."""
    vals = data.draw(st.lists(st.integers(0, 3), min_size=B * N, max_size=B * N))  # many ties
    score = torch.tensor(vals, dtype=torch.int64).view(B, N)
    order = score.argsort(dim=1, stable=True)
    k = data.draw(st.integers(0, N))
    ks = torch.tensor(data.draw(st.lists(st.integers(0, N), min_size=B, max_size=B)))
    for kk, take in ((k, torch.arange(N) < k), (ks, torch.arange(N) < ks[:, None])):
        want = torch.zeros(B, N, dtype=torch.bool).scatter_(1, order, take.expand(B, N))
        assert torch.equal(P.smallest_k(score, kk), want)
        assert torch.equal(_select._smallest_k_torch(score, kk), want)
        assert torch.equal(_select._smallest_k_torch(score.float(), kk), want)
    assert np.array_equal(P.smallest_k(score.numpy().astype(np.uint32), ks.numpy()), want.numpy())


def test_ids_match_the_torch_definition():
    """MAE's ids on a CPU mask (numpy) equal their definition: visible then masked indices ascending, and
    ids_restore inverts ids_shuffle."""
    pm = P.random_patches((7, 9), 0.6, seed=3, batch=5)
    m = pm.mask
    for r in range(5):
        assert torch.equal(pm.ids_keep[r], (~m[r]).nonzero()[:, 0])
        assert torch.equal(pm.ids_masked[r], m[r].nonzero()[:, 0])
    assert torch.equal(pm.ids_shuffle.gather(1, pm.ids_restore), torch.arange(63).expand(5, -1))
