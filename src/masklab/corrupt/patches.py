"""Patch masks on an H x W grid for masked image modelling: which patches the encoder must not see.

Every generator returns a :class:`PatchMask`: ``mask`` [B, H*W] bool (True = masked, patches in row-major
order), plus ``ids_keep`` / ``ids_restore`` for an MAE encoder and decoder (computed on first use). Every
generator but OneRef's masks the same number of patches in every row; OneRef's count follows each row's referred
region, and :meth:`PatchMask.visible` pads its rows for an encoder. All generators are batched tensor code with no
per-row Python loop.

Generators (one function each, same keyword interface):

- :func:`random_patches`   MAE (He et al. 2022, Sec. 3 "Masking"): uniform without replacement,
  ``int(N*(1-r))`` patches kept, exactly as MAE's ``random_masking``.
- :func:`block_patches`    BEiT block-wise masking (Bao et al. 2022, Algorithm 1): rectangles with area >=
  ``min_block`` and log-uniform aspect ratio, added until the target count. BEiT's loop can stop short; here
  the block that crosses the target is cut in raster order so the count is exact.
- :func:`simmim_patches`   SimMIM (Xie et al. 2022, Sec. 3.1): random cells of a coarse grid,
  ``ceil(r*cells)`` cells.
- :func:`colormae_patches` ColorMAE (Hinojosa et al. 2024, Sec. 3.1, its four noise filters): random crops
  (with flips) of a bank of white noise filtered into red (low-pass), blue (high-pass), green (band-pass) or
  purple (band-stop) noise; the strongest values stay visible, as in the ColorMAE code. The bank is filtered
  once from a fixed seed by a linear (not circular) convolution, instead of being downloaded.
- :func:`hpm_patches`      HPM (Wang et al. 2023, Sec. 3.3): a fraction ``alpha_t`` of the masked patches are
  the ones with the highest predicted loss (from an EMA teacher, :mod:`masklab.objectives.mae`); ``alpha_t``
  grows linearly with training progress (easy-to-hard), the rest random.
- :func:`referring_patches` OneRef referring-aware dynamic masking (Xiao et al. 2024, Sec. 3.2, Algorithm 1):
  ratio gamma inside the referred region grown by a margin, beta outside; the total follows the region.

Randomness: pass ``keys`` [B] from :func:`masklab.corrupt.keyed.example_keys`, or ``seed`` (int, with
``epoch``; rows are example indices 0..B-1; ``None`` means 0), or ``seed`` as a ``torch.Generator`` (then
``torch.rand`` with that generator is used instead of keyed noise). Keyed draws come from
:func:`masklab.corrupt.keyed.uniform` / :func:`masklab.corrupt.keyed.bits`, the same stream as every token mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import Source, check_ratio, smallest_k
from masklab.corrupt.keyed import Stream

__all__ = [
    "PatchMask",
    "random_patches",
    "block_patches",
    "beit_blocks",
    "simmim_patches",
    "colormae_patches",
    "colored_noise",
    "noise_bank",
    "noise_response",
    "hpm_patches",
    "hpm_alpha",
    "referring_patches",
    "region_from_boxes",
    "COLORS",
]

COLORS = ("white", "red", "blue", "green", "purple")


# ------------------------------------------------------------------------------------------------------------
# record


@dataclass
class PatchMask:
    """A patch mask for a batch on a ``grid`` = (H, W) of patches.

    mask:        [B, N] bool, True = masked (hidden from the encoder), N = H*W in row-major order.
    ids_keep:    [B, K] indices of the visible patches, ascending (what the MAE encoder gathers).
    ids_restore: [B, N] position of each patch in ``cat(visible, masked)`` order; MAE's decoder gathers its
                 ``cat(encoded visible, mask tokens)`` sequence with it to put patches back in place.
    """

    mask: torch.Tensor
    grid: tuple[int, int]

    def __post_init__(self):
        self._ids = None

    @property
    def num_masked(self) -> int:
        return int(self.mask[0].sum()) if self.mask.shape[0] else 0

    @property
    def even(self) -> bool:
        """Whether every row masks the same number of patches (every strategy but ``referring``)."""
        counts = self.mask.sum(1)
        return bool((counts == counts[:1]).all())

    def visible(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(ids [B, K], valid [B, K] or None): the visible patch indices of each row, ascending, for an encoder.

        Even rows give ``(ids_keep, None)``. Uneven rows (OneRef's region-driven counts) are padded to the largest
        visible count K: ``valid`` marks the real entries and the padding points at patch 0, for the encoder to
        ignore through its key padding mask.
        """
        if self.even:
            return self.ids_keep, None
        m = self.mask
        counts = (~m).sum(1, keepdim=True)  # (B, 1)
        K = int(counts.max())
        ids = m.to(torch.uint8).argsort(dim=1, stable=True)[:, :K]  # visible first, each part ascending
        valid = torch.arange(K, device=m.device) < counts  # (B, K)
        return torch.where(valid, ids, torch.zeros_like(ids)), valid

    def _index(self):
        if self._ids is None:
            B, N = self.mask.shape
            m = self.mask
            counts = m.numpy().sum(1) if m.device.type == "cpu" else m.sum(1)
            if B and not bool((counts == counts[0]).all()):
                raise ValueError(f"rows mask different numbers of patches ({counts.tolist()}): no fixed ids_keep")
            K = N - (int(counts[0]) if B else 0)
            if m.device.type == "cpu":
                self._ids = _np_ids(m.numpy(), K)
                return self._ids
            keep = (~m).nonzero()[:, 1].view(B, K)
            masked = m.nonzero()[:, 1].view(B, N - K)
            # cat(visible, masked) position of each patch: rank among visible, or K + rank among masked
            restore = torch.where(m, K + m.cumsum(1) - 1, (~m).cumsum(1) - 1)
            self._ids = (keep, masked, restore)
        return self._ids

    @property
    def ids_keep(self) -> torch.Tensor:
        return self._index()[0]

    @property
    def ids_masked(self) -> torch.Tensor:
        return self._index()[1]

    @property
    def ids_restore(self) -> torch.Tensor:
        return self._index()[2]

    @property
    def ids_shuffle(self) -> torch.Tensor:
        """[B, N] visible indices then masked indices (MAE's ``ids_shuffle``)."""
        return torch.cat([self.ids_keep, self.ids_masked], 1)

    def noise(self) -> torch.Tensor:
        """[B, N] float ``noise`` for Hugging Face ``ViTMAEModel(pixel_values, noise=...)``: its
        ``argsort`` is ``ids_shuffle``, so HF keeps exactly these patches when
        ``int(N * (1 - config.mask_ratio)) == K``."""
        return self.ids_restore.float()

    def image(self) -> torch.Tensor:
        """[B, H, W] bool view of the mask."""
        return self.mask.view(-1, *self.grid)


def _np_ids(m: np.ndarray, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids_keep, ids_masked, ids_restore of a CPU mask [B, N] with K visible patches per row (numpy):
    ``ids_restore`` is the inverse permutation of ``cat(ids_keep, ids_masked)``, written by one scatter."""
    B, N = m.shape
    shuffle = np.concatenate([np.flatnonzero(~m).reshape(B, K), np.flatnonzero(m).reshape(B, N - K)], 1)
    restore = np.empty(B * N, dtype=np.int64)
    restore[shuffle.reshape(-1)] = np.broadcast_to(np.arange(N), (B, N)).reshape(-1)
    shuffle -= np.arange(0, B * N, N)[:, None]
    keep, masked = np.ascontiguousarray(shuffle[:, :K]), np.ascontiguousarray(shuffle[:, K:])
    restore = restore.reshape(B, N)
    return torch.from_numpy(keep), torch.from_numpy(masked), torch.from_numpy(restore)


# ------------------------------------------------------------------------------------------------------------
# randomness and checks


def _check_grid(grid) -> tuple[int, int]:
    try:
        H, W = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (H, W), got {grid!r}") from None
    if H < 1 or W < 1:
        raise ValueError(f"grid must have positive sides, got {grid!r}")
    return H, W


def _num_masked(N: int, ratio: float) -> int:
    """MAE's rounding: ``len_keep = int(N * (1 - ratio))`` visible patches."""
    return N - int(N * (1 - check_ratio("ratio", ratio)))


def _mask_top(score: torch.Tensor, k: int) -> torch.Tensor:
    """[B, N] bool with exactly the ``k`` largest scores of each row set (ties: earlier position first)."""
    return smallest_k(-score, k)


def _keyed_order(src: Source, n: int, stream: int):
    """:meth:`Source.order` draws, as a uint32 numpy array when keyed on the CPU (no int64 copy)."""
    if src.gen is None and src.device.type == "cpu":
        return keyed.np_bits(src.keys, n, stream)
    return src.order(n, stream)


def _as_mask(x) -> torch.Tensor:
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


# ------------------------------------------------------------------------------------------------------------
# MAE random


def random_patches(
    grid, ratio: float = 0.75, *, batch: int | None = None, keys=None, seed=None, epoch: int = 0, device=None
) -> PatchMask:
    """MAE random masking: exactly ``N - int(N * (1 - ratio))`` patches masked per row, uniformly."""
    H, W = _check_grid(grid)
    N = H * W
    k = _num_masked(N, ratio)
    src = Source(batch, keys, seed, epoch, device)
    return PatchMask(_as_mask(~smallest_k(_keyed_order(src, N, Stream.PATCH_RANDOM), N - k)), (H, W))


# ------------------------------------------------------------------------------------------------------------
# BEiT block-wise


def beit_blocks(
    src_or_keys,
    grid,
    num_blocks: int,
    *,
    min_block: int,
    max_block: int,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    stream: int = Stream.BEIT_BLOCKS,
):
    """Candidate blocks [B, num_blocks] as (top, left, h, w) long tensors, drawn as in BEiT's
    ``MaskingGenerator``.

    Area ~ U(min_block, max_block), log aspect ratio ~ U(log min_aspect, log max_aspect), ``h =
    round(sqrt(A*a))``,
    ``w = round(sqrt(A/a))``, position uniform. A candidate that does not fit the grid is returned with h = w
    = 0 (BEiT retries up to 10 times; here more candidates are drawn instead).
    """
    src = src_or_keys if isinstance(src_or_keys, Source) else Source(None, src_or_keys, None, 0, None)
    H, W = grid
    max_aspect = max_aspect or 1.0 / min_aspect
    u = src.uniform(4 * num_blocks, stream).view(-1, 4, num_blocks)
    area = min_block + u[:, 0] * (max_block - min_block)
    log_a = math.log(min_aspect) + u[:, 1] * (math.log(max_aspect) - math.log(min_aspect))
    aspect = log_a.exp()
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    fits = (h >= 1) & (w >= 1) & (h <= H) & (w <= W)
    h, w = h * fits, w * fits
    top = (u[:, 2] * (H - h + 1)).long().clamp(max=H - 1)
    left = (u[:, 3] * (W - w + 1)).long().clamp(max=W - 1)
    return top, left, h, w


def block_patches(
    grid,
    ratio: float = 0.4,
    *,
    batch: int | None = None,
    min_block: int = 16,
    max_block: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    num_blocks: int = 32,
    keys=None,
    seed=None,
    epoch: int = 0,
    device=None,
) -> PatchMask:
    """BEiT block-wise masking with exactly ``round(ratio * N)`` masked patches per row.

    Defaults are BEiT's (75 of 196 patches ~ 0.4, ``min_num_patches=16``, ``min_aspect=0.3``). Candidate
    blocks are added in order; the block that would pass the target is filled in raster order up to it. If all
    ``num_blocks`` candidates together cover less than the target (rare; see tests), the rest is random.
    """
    H, W = _check_grid(grid)
    N = H * W
    target = round(check_ratio("ratio", ratio) * N)
    max_block = target if max_block is None else int(max_block)
    max_block = max(max_block, min_block)
    if min_block < 1 or min_block > N:
        raise ValueError(f"min_block {min_block} does not fit a {H}x{W} grid ({N} patches)")
    if min_aspect <= 0 or (max_aspect is not None and max_aspect < min_aspect):
        raise ValueError(f"aspect range must be positive and ordered, got ({min_aspect}, {max_aspect})")
    amax = max_aspect or 1.0 / min_aspect
    aspects = [math.exp(math.log(min_aspect) + i / 63 * math.log(amax / min_aspect)) for i in range(64)]
    if not any(round(math.sqrt(min_block * a)) <= H and round(math.sqrt(min_block / a)) <= W for a in aspects):
        raise ValueError(f"a block of min_block={min_block} patches does not fit a {H}x{W} grid")
    src = Source(batch, keys, seed, epoch, device)
    B, dev = src.batch, src.device
    top, left, h, w = beit_blocks(
        src,
        (H, W),
        num_blocks,
        min_block=min_block,
        max_block=max_block,
        min_aspect=min_aspect,
        max_aspect=max_aspect,
    )
    R = num_blocks
    rows = torch.arange(H, device=dev)
    cols = torch.arange(W, device=dev)
    in_r = (rows >= top[..., None]) & (rows < (top + h)[..., None])  # [B, R, H]
    in_c = (cols >= left[..., None]) & (cols < (left + w)[..., None])  # [B, R, W]
    cover = (in_r[..., :, None] & in_c[..., None, :]).view(B, R, N)  # [B, R, N]
    # first block covering each patch (R = none)
    order = torch.arange(R, 0, -1, device=dev)[None, :, None]
    first = R - (cover * order).amax(1)  # [B, N]
    added = torch.nn.functional.one_hot(first, R + 1)[..., :R].sum(1)  # [B, R] new patches per block
    total = added.cumsum(1)  # [B, R]
    full = (total <= target).sum(1, keepdim=True)  # blocks taken whole
    done = torch.where(full > 0, total.gather(1, (full - 1).clamp(min=0)), torch.zeros_like(full))
    mask = first < full
    # the crossing block, in raster order, up to the target
    crossing = first == full
    mask |= crossing & (crossing.cumsum(1) <= target - done)
    # rare: candidates covered too little -> random fill
    short = target - mask.sum(1, keepdim=True)
    u = src.uniform(N, stream=Stream.BEIT_FILL)
    rank_free = torch.where(mask, torch.full_like(u, 2.0), u).argsort(dim=1, stable=True).argsort(1)  # ties: by index
    mask |= rank_free < short
    return PatchMask(mask, (H, W))


# ------------------------------------------------------------------------------------------------------------
# SimMIM


def simmim_patches(
    grid,
    ratio: float = 0.6,
    *,
    cell: int = 8,
    batch: int | None = None,
    keys=None,
    seed=None,
    epoch: int = 0,
    device=None,
) -> PatchMask:
    """SimMIM masking: ``ceil(ratio * cells)`` random cells of ``cell x cell`` patches (SimMIM: 32px mask
    patches over 4px model patches -> ``cell=8``)."""
    H, W = _check_grid(grid)
    r = check_ratio("ratio", ratio)
    if cell < 1 or cell > H or cell > W or H % cell or W % cell:
        raise ValueError(f"cell {cell} must divide the {H}x{W} grid and be no larger than it")
    h, w = H // cell, W // cell
    src = Source(batch, keys, seed, epoch, device)
    coarse = _as_mask(~smallest_k(_keyed_order(src, h * w, Stream.SIMMIM), h * w - math.ceil(r * h * w)))
    coarse = coarse.view(-1, h, 1, w, 1)
    mask = coarse.expand(-1, h, cell, w, cell).reshape(-1, H * W)
    return PatchMask(mask, (H, W))


# ------------------------------------------------------------------------------------------------------------
# ColorMAE
#
# The masks are random crops of a bank of filtered white noise, as in the reference ColorMAE code
# (carlosh93/ColorMAE, models/utils/masking_generator.py: ``ColorMasking`` crops W x W windows with random
# flips out of a [L, M, M] noise bank and divides each by its maximum, ``NormalizeBySliceMax``). The reference
# downloads its banks; here a bank is filtered once from a fixed seed (Hinojosa et al. 2024, Sec. 3.1: N_r, N_b,
# N_g, N_p below) and cached. The filter is a linear convolution of a larger white-noise image, keeping only the
# fully covered centre, so nothing wraps around an edge.

BANK_SIDE = 64  # side of one bank slice, in patches (at least twice the grid's side; a crop is H x W of it)
BANK_SLICES = 128  # slices in a bank: the crops of different examples come from different slices
BANK_SEED = 0  # the white noise behind every bank; a fixed torch.Generator seed, no global RNG
SIGMA_RED = 2.0  # std (patches) of the Gaussian low-pass G_s of red noise: N_r = G_s * W
SIGMA_BLUE = 0.75  # blue noise: N_b = W - G_s * W, high-pass
SIGMA_GREEN = (0.75, 1.5)  # green noise: N_g = G_s1 * W - G_s2 * W, a band-pass difference of Gaussians
_RADIUS = 8  # kernel half-width in patches: 4 x the widest std, so every kernel's truncated tail is < 4e-4


def _gauss(sigma: float) -> torch.Tensor:
    """[2R+1] float64 Gaussian of std ``sigma`` patches, summing to 1."""
    x = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _kernel(color: str) -> torch.Tensor:
    """[2R+1, 2R+1] float64 spatial kernel of ``color``: the delta, a separable Gaussian, or their differences.

    purple N_p = W - N_g = delta - green (band-stop); white = delta.
    """
    if color not in COLORS:
        raise ValueError(f"unknown noise color {color!r}; expected one of {', '.join(COLORS)}")
    delta = torch.zeros(2 * _RADIUS + 1, 2 * _RADIUS + 1, dtype=torch.float64)
    delta[_RADIUS, _RADIUS] = 1.0

    def g2(s):
        return torch.outer(_gauss(s), _gauss(s))

    green = g2(SIGMA_GREEN[0]) - g2(SIGMA_GREEN[1])
    return {
        "white": delta,
        "red": g2(SIGMA_RED),
        "blue": delta - g2(SIGMA_BLUE),
        "green": green,
        "purple": delta - green,
    }[color]


def noise_response(color: str, size: int) -> torch.Tensor:
    """|H(f)| [size, size] of the ``color`` kernel on the ``size`` x ``size`` DFT grid (``torch.fft.fftfreq``
    order, cycles per patch): the expected power spectrum of the bank is proportional to its square."""
    k = _kernel(color)
    if size < k.shape[0]:
        raise ValueError(f"size must be at least {k.shape[0]} for the color kernels, got {size}")
    return torch.fft.fft2(k, s=(size, size)).abs()


@lru_cache(maxsize=16)
def _bank_cpu(color: str, side: int, slices: int, seed: int) -> torch.Tensor:
    """[slices, side, side] float32 bank: white noise of side ``side + 2R`` filtered by ``color``'s kernel, the
    ``side`` x ``side`` centre kept (a 'valid' convolution), then standardised over the bank."""
    gen = torch.Generator().manual_seed(seed)
    white = torch.randn(slices, 1, side + 2 * _RADIUS, side + 2 * _RADIUS, generator=gen, dtype=torch.float64)
    # linear convolution through the FFT: output n of the circular convolution of length side + 2R reads inputs
    # n - 2R .. n only, so for n >= 2R nothing wraps (a 'valid' convolution, as conv2d without padding)
    spectrum = torch.fft.rfft2(white[:, 0]) * torch.fft.rfft2(_kernel(color), s=white.shape[-2:])
    out = torch.fft.irfft2(spectrum, s=white.shape[-2:])[:, 2 * _RADIUS :, 2 * _RADIUS :]  # (L, side, side)
    out = (out - out.mean()) / out.std()  # zero mean, unit variance (ColorMAE Sec. 3.1)
    return out.float()


@lru_cache(maxsize=16)
def _bank_on(color: str, side: int, slices: int, seed: int, device: torch.device) -> torch.Tensor:
    return _bank_cpu(color, side, slices, seed).to(device)


def noise_bank(color: str, side: int = BANK_SIDE, slices: int = BANK_SLICES, seed: int = BANK_SEED) -> torch.Tensor:
    """The ``color`` noise bank [slices, side, side] (float32, zero mean and unit variance over the bank), built
    once per process and cached."""
    if side < 1 or slices < 1:
        raise ValueError(f"side and slices must be positive, got {side}, {slices}")
    return _bank_cpu(color, int(side), int(slices), int(seed))


def colored_noise(
    grid, color: str, *, batch: int | None = None, keys=None, seed=None, epoch: int = 0, device=None
) -> torch.Tensor:
    """[B, H*W] windows of the ``color`` bank: each row a random slice, a random H x W crop and random flips,
    divided by its maximum (reference ``NormalizeBySliceMax``).

    Each row draws its slice, offset and flips from its own key, so a row does not depend on its batch (the
    reference draws one crop and one flip per batch and gives row i slice i). A crop whose maximum is not
    positive is divided by its largest magnitude instead, which keeps the order of its values.
    """
    H, W = _check_grid(grid)
    if color not in COLORS:
        raise ValueError(f"unknown noise color {color!r}; expected one of {', '.join(COLORS)}")
    src = Source(batch, keys, seed, epoch, device)
    side = max(BANK_SIDE, 2 * max(H, W))
    bank = _bank_on(color, side, BANK_SLICES, BANK_SEED, src.device)  # (L, S, S)
    u = src.uniform(5, stream=Stream.COLOR_NOISE)  # (B, 5): slice, top, left, flip rows, flip columns
    pick = (u[:, 0] * BANK_SLICES).long()
    top = (u[:, 1] * (side - H + 1)).long()
    left = (u[:, 2] * (side - W + 1)).long()
    rows = (top[:, None] + torch.arange(H, device=src.device))[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + torch.arange(W, device=src.device))[:, None, :]  # (B, 1, W)
    crop = bank[pick[:, None, None], rows, cols]  # (B, H, W)
    crop = torch.where((u[:, 3] < 0.5)[:, None, None], crop, crop.flip(1))
    crop = torch.where((u[:, 4] < 0.5)[:, None, None], crop, crop.flip(2))
    crop = crop.reshape(-1, H * W)
    top_value = crop.amax(1, keepdim=True)
    scale = torch.where(top_value > 0, top_value, crop.abs().amax(1, keepdim=True).clamp_min(1e-30))
    return crop / scale


def colormae_patches(
    grid,
    color: str = "green",
    ratio: float = 0.75,
    *,
    batch: int | None = None,
    keys=None,
    seed=None,
    epoch: int = 0,
    device=None,
) -> PatchMask:
    """ColorMAE masking: keep the ``int(N * (1 - ratio))`` strongest values of a colored-noise window visible
    (reference ``color_noise_mask``: ``argsort(window, descending=True)``), mask the rest."""
    H, W = _check_grid(grid)
    N = H * W
    k = _num_masked(N, ratio)
    noise = colored_noise((H, W), color, batch=batch, keys=keys, seed=seed, epoch=epoch, device=device)
    keep = _mask_top(noise, N - k)
    return PatchMask(~keep, (H, W))


# ------------------------------------------------------------------------------------------------------------
# HPM


def hpm_alpha(progress: float, alpha_max: float = 0.5) -> float:
    """HPM's easy-to-hard schedule: the hard share of the masked set grows linearly, 0 -> ``alpha_max``.

    ``progress`` = (epoch + 1) / total_epochs in the HPM code, in [0, 1].
    """
    return check_ratio("progress", progress) * check_ratio("alpha_max", alpha_max)


def hpm_patches(
    pred_loss: torch.Tensor,
    grid,
    ratio: float = 0.75,
    *,
    progress: float = 1.0,
    alpha_max: float = 0.5,
    keys=None,
    seed=None,
    epoch: int = 0,
) -> PatchMask:
    """HPM masking from a predicted per-patch loss [B, N] (in HPM, the EMA teacher's): the ``int(M * alpha_t)``
    patches with the highest predicted loss are masked (hard patches), the other ``M - int(M * alpha_t)`` masked
    patches are random, M = number masked and ``alpha_t = hpm_alpha(progress, alpha_max)`` (reference
    ``models_mae_learn_loss.py``, ``generate_mask``, one top-k instead of its per-row loop)."""
    H, W = _check_grid(grid)
    N = H * W
    if pred_loss.dim() != 2 or pred_loss.shape[1] != N:
        raise ValueError(f"pred_loss must be [B, {N}] for a {H}x{W} grid, got {tuple(pred_loss.shape)}")
    k = _num_masked(N, ratio)
    n_hard = int(k * hpm_alpha(progress, alpha_max))
    src = Source(pred_loss.shape[0], keys, seed, epoch, pred_loss.device)
    u = src.uniform(N, stream=Stream.HPM)
    hard = _mask_top(pred_loss.detach().float(), n_hard)
    return PatchMask(_mask_top(u + 2.0 * hard, k), (H, W))


# ------------------------------------------------------------------------------------------------------------
# OneRef referring-aware


ONEREF_OUTSIDE = 0.35  # beta: the mask ratio outside the referred region (reference ``--mim_mask_ratio``)
ONEREF_INSIDE = 0.75  # gamma: the mask ratio inside it (reference ``--dynamic_mask_ratio``)


def region_from_boxes(boxes, grid, image_size=None, min_cover: float = 0.5) -> torch.Tensor:
    """[B, H, W] bool: patches at least ``min_cover`` covered by the box (x0, y0, x1, y1) in image pixels.

    ``image_size`` = (height, width) in pixels; default = the grid (boxes in patch units). A box outside the
    image or with x1 <= x0 or y1 <= y0 raises ValueError.
    """
    H, W = _check_grid(grid)
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [B, 4] (x0, y0, x1, y1), got shape {tuple(boxes.shape)}")
    ih, iw = (H, W) if image_size is None else (float(s) for s in image_size)
    x0, y0, x1, y1 = boxes.unbind(1)
    bad = (x0 < 0) | (y0 < 0) | (x1 > iw) | (y1 > ih) | (x1 <= x0) | (y1 <= y0)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"box {boxes[i].tolist()} is outside the {ih:g}x{iw:g} image or empty")
    ph, pw = ih / H, iw / W
    ey = torch.arange(H + 1, device=boxes.device) * ph  # patch edges
    ex = torch.arange(W + 1, device=boxes.device) * pw
    oy = (torch.minimum(ey[1:], y1[:, None]) - torch.maximum(ey[:-1], y0[:, None])).clamp(min=0) / ph  # [B, H]
    ox = (torch.minimum(ex[1:], x1[:, None]) - torch.maximum(ex[:-1], x0[:, None])).clamp(min=0) / pw  # [B, W]
    return oy[:, :, None] * ox[:, None, :] >= min_cover - 1e-6


def _grow(region: torch.Tensor, margin: int) -> torch.Tensor:
    """[B, H, W] bool ``region`` grown by ``margin`` patches on every side, clipped to the grid (for a box: the
    reference's ``box_xyxy -/+ margin``, clipped)."""
    if margin == 0:
        return region
    k = 2 * margin + 1
    grown = torch.nn.functional.max_pool2d(region[:, None].float(), k, stride=1, padding=margin)
    return grown[:, 0] > 0


def _masked_in_part(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """[B] masked count of a part of ``n`` patches at ``ratio``: ``n - int(n * (1 - ratio))`` (MAE's rounding, as
    the reference's ``random_masking_simple``)."""
    return n - (n.double() * (1.0 - ratio)).floor().long()


def referring_patches(
    grid,
    region=None,
    *,
    boxes=None,
    image_size=None,
    ratio: float = ONEREF_OUTSIDE,
    inside_ratio: float = ONEREF_INSIDE,
    margin: int = 1,
    keys=None,
    seed=None,
    epoch: int = 0,
) -> PatchMask:
    """OneRef's referring-aware dynamic image masking (Xiao et al. 2024, Sec. 3.2 and Algorithm 1; reference
    ``datasets/masking_generator.py``, ``Dynamic_MIM_MaskGenerator``).

    The referred region, grown by ``margin`` patches, is masked at the high ratio ``inside_ratio`` (gamma, 0.75),
    the rest of the image at the low ratio ``ratio`` (beta, 0.35), each part uniformly at random. A row's total,
    and so its overall ratio alpha, is set by the size of its region: rows mask different numbers of patches
    (:meth:`PatchMask.visible` pads them for an MAE encoder). ``region``: [B, H, W] bool at patch level, or give
    ``boxes`` [B, 4] (pixels, with ``image_size``; :func:`region_from_boxes`).
    """
    H, W = _check_grid(grid)
    N = H * W
    if (region is None) == (boxes is None):
        raise ValueError("give exactly one of region (bool [B, H, W]) or boxes ([B, 4])")
    if region is None:
        region = region_from_boxes(boxes, (H, W), image_size)
    region = torch.as_tensor(region, dtype=torch.bool)
    if region.dim() != 3 or tuple(region.shape[1:]) != (H, W):
        raise ValueError(f"region must be [B, {H}, {W}] bool, got shape {tuple(region.shape)}")
    if int(margin) != margin or margin < 0:
        raise ValueError(f"margin must be a non-negative int, got {margin!r}")
    beta, gamma = check_ratio("ratio", ratio), check_ratio("inside_ratio", inside_ratio)
    inside = _grow(region, int(margin)).reshape(-1, N)
    n_in = inside.sum(1)
    k_in, k_out = _masked_in_part(n_in, gamma), _masked_in_part(N - n_in, beta)  # (B,), (B,)
    src = Source(inside.shape[0], keys, seed, epoch, inside.device)
    order = src.order(N, stream=Stream.REFERRING)  # (B, N) uniform order; ties broken by position
    past = 2.0 if src.gen is not None else 1 << 32  # above every draw (floats in [0, 1) or uint32 bits)
    mask = smallest_k(torch.where(inside, order, order + past), k_in)  # the k_in first inside patches
    mask |= smallest_k(torch.where(inside, order + past, order), k_out)  # the k_out first outside patches
    return PatchMask(mask, (H, W))
