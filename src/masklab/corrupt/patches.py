"""Patch masks on an H x W grid for masked image modelling: which patches the encoder must not see.

Every generator returns a :class:`PatchMask`: ``mask`` [B, H*W] bool (True = masked, patches in row-major
order) with the same number of masked patches in every row, plus ``ids_keep`` / ``ids_restore`` for an MAE
encoder and decoder (computed on first use). All generators are batched tensor code with no per-row Python
loop.

Generators (one function each, same keyword interface):

- :func:`random_patches`   MAE (He et al. 2022, Sec. 3 "Masking"): uniform without replacement,
  ``int(N*(1-r))`` patches kept, exactly as MAE's ``random_masking``.
- :func:`block_patches`    BEiT block-wise masking (Bao et al. 2022, Algorithm 1): rectangles with area >=
  ``min_block`` and log-uniform aspect ratio, added until the target count. BEiT's loop can stop short; here
  the block that crosses the target is cut in raster order so the count is exact.
- :func:`simmim_patches`   SimMIM (Xie et al. 2022, Sec. 3.1): random cells of a coarse grid,
  ``ceil(r*cells)`` cells.
- :func:`colormae_patches` ColorMAE (Hinojosa et al. 2024, Sec. 3): white noise filtered on the fly into red
  (low-pass), blue (high-pass), green (band-pass) or purple (band-stop) noise; the strongest values are kept,
  as in the ColorMAE code, with no downloaded pattern bank.
- :func:`hpm_patches`      HPM (Wang et al. 2023, Sec. 3.3): a fraction ``alpha_t`` of the masked patches are
  the ones with the highest predicted loss; ``alpha_t`` grows linearly with training progress (easy-to-hard),
  the rest random.
- :func:`referring_patches` OneRef referring-aware masking (Xiao et al. 2024, Sec. 3.2): a higher ratio inside
  the referred box or region, with the total count per row fixed.

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


def noise_response(color: str, grid) -> torch.Tensor:
    """Amplitude response [H, W//2+1] of the ``color`` filter on the rfft2 frequency grid (cycles per patch).

    white 1; red exp(-f^2/2s^2), s=0.08 (low-pass); blue 1 - exp(-f^2/2s^2), s=0.25 (high-pass); green a
    difference of Gaussians peaking near f~0.2 (band-pass); purple 1 - green (band-stop). DC is zeroed.
    """
    H, W = grid
    fy = torch.fft.fftfreq(H, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(W, dtype=torch.float64)[None, :]
    f2 = fy**2 + fx**2
    low = torch.exp(-f2 / (2 * 0.08**2))
    high = 1 - torch.exp(-f2 / (2 * 0.25**2))
    band = torch.exp(-f2 / (2 * 0.3**2)) - torch.exp(-f2 / (2 * 0.12**2))
    band = band / band.max()
    resp = {"white": torch.ones_like(f2), "red": low, "blue": high, "green": band, "purple": 1 - band}
    if color not in resp:
        raise ValueError(f"unknown noise color {color!r}; expected one of {', '.join(COLORS)}")
    out = resp[color].clone()
    out[0, 0] = 0.0
    return out


@lru_cache(maxsize=64)
def _filter_matrix(color: str, H: int, W: int) -> torch.Tensor:
    """[N, N] real matrix of the circular 2-D filter: ``noise @ M`` filters each row (one matmul per
    batch)."""
    eye = torch.eye(H * W, dtype=torch.float64).view(H * W, H, W)
    out = torch.fft.irfft2(torch.fft.rfft2(eye) * noise_response(color, (H, W)), s=(H, W))
    return out.reshape(H * W, H * W).float()


@lru_cache(maxsize=64)
def _filter_on(color: str, H: int, W: int, device: torch.device) -> torch.Tensor:
    return _filter_matrix(color, H, W).to(device)


def colored_noise(
    grid, color: str, *, batch: int | None = None, keys=None, seed=None, epoch: int = 0, device=None
) -> torch.Tensor:
    """[B, H*W] zero-mean noise with the ``color`` spectrum: white noise times the circulant filter."""
    H, W = _check_grid(grid)
    if color not in COLORS:
        raise ValueError(f"unknown noise color {color!r}; expected one of {', '.join(COLORS)}")
    src = Source(batch, keys, seed, epoch, device)
    u = src.uniform(H * W, stream=Stream.COLOR_NOISE).sub_(0.5)
    if color == "white":
        return u
    return u @ _filter_on(color, H, W, u.device)


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
    """ColorMAE masking: keep the ``int(N * (1 - ratio))`` strongest values of colored noise, mask the
    rest."""
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
    """HPM masking from a predicted per-patch loss [B, N]: the ``int(M * alpha_t)`` patches with the highest
    predicted loss are masked (hard patches), the other ``M - int(M * alpha_t)`` masked patches are random,
    M = number masked and ``alpha_t = hpm_alpha(progress, alpha_max)``."""
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


def referring_patches(
    grid,
    region=None,
    *,
    boxes=None,
    image_size=None,
    ratio: float = 0.6,
    inside_ratio: float = 0.8,
    keys=None,
    seed=None,
    epoch: int = 0,
) -> PatchMask:
    """Referring-aware masking: ``round(inside_ratio * n_in)`` patches of the referred region are masked, and
    the rest of the fixed total ``N - int(N * (1 - ratio))`` is drawn from outside (clamped where a region is
    too big
    or too small to honour both). ``region``: [B, H, W] bool at patch level, or give ``boxes`` [B, 4]."""
    H, W = _check_grid(grid)
    N = H * W
    if (region is None) == (boxes is None):
        raise ValueError("give exactly one of region (bool [B, H, W]) or boxes ([B, 4])")
    if region is None:
        region = region_from_boxes(boxes, (H, W), image_size)
    region = torch.as_tensor(region, dtype=torch.bool)
    if region.dim() != 3 or tuple(region.shape[1:]) != (H, W):
        raise ValueError(f"region must be [B, {H}, {W}] bool, got shape {tuple(region.shape)}")
    inside = region.reshape(-1, N)
    k = _num_masked(N, ratio)
    r_in = check_ratio("inside_ratio", inside_ratio)
    n_in = inside.sum(1, keepdim=True)
    k_in = (n_in * r_in).round().long()
    k_in = torch.minimum(torch.maximum(k_in, k - (N - n_in)), torch.minimum(n_in, torch.full_like(n_in, k)))
    src = Source(inside.shape[0], keys, seed, epoch, inside.device)
    u = src.uniform(N, stream=Stream.REFERRING)
    # rank inside patches and outside patches separately; take k_in of the first and k - k_in of the second
    # stable: 24-bit draws can tie, and a tie must fall the same way on every device
    rank_in = torch.where(inside, u, u + 2).argsort(dim=1, stable=True).argsort(1)
    rank_out = torch.where(inside, u + 2, u).argsort(dim=1, stable=True).argsort(1)
    mask = (inside & (rank_in < k_in)) | (~inside & (rank_out < k - k_in))
    return PatchMask(mask, (H, W))
