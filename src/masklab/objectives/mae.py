"""MAE: masked autoencoding of image patches (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners").

The encoder sees only the visible patches (no mask tokens, Sec. 3 "MAE encoder"); a light decoder gets the
encoded visible patches plus a shared mask token at every masked position, unshuffled with ``ids_restore``
(Sec. 3 "MAE decoder"), and predicts the pixels of every patch. The loss is the mean squared error on masked
patches only, with each target patch normalized by its own mean and variance (``norm_pix_loss``, Sec. 3
"Reconstruction target").

Any :mod:`masklab.corrupt.patches` strategy supplies the mask. For HPM (Wang et al. 2023) the decoder has an
extra loss-prediction head trained with HPM's relative (pairwise ranking) loss, Eq. 6;
:meth:`MAE.predict_loss` gives the per-patch predicted loss that :func:`masklab.corrupt.patches.hpm_patches`
turns into a mask.

The model is a tiny ViT built from ``torch.nn`` (pre-norm transformer blocks, fixed 2-D sin-cos positions as
in MAE). :class:`MAEObjective` trains it through the one loop (:func:`masklab.train.loop.train`, recipe
``mae-digits``); :func:`linear_probe` is the evaluation used by ``benchmarks/mae_digits.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import patches as P
from masklab.data.digits import digits_images  # noqa: F401  (re-exported: the loader lives in masklab.data)
from masklab.objectives.base import Objective

__all__ = [
    "patchify",
    "unpatchify",
    "sincos_2d",
    "ViTEncoder",
    "MAE",
    "MAEConfig",
    "MAEOutput",
    "mae_loss",
    "hpm_rank_loss",
    "mask_for",
    "linear_probe",
    "ink_boxes",
]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, patch*patch*C], patches in row-major order (MAE's layout)."""
    B, C, H, W = images.shape
    if H % patch or W % patch:
        raise ValueError(f"image {H}x{W} is not divisible into {patch}x{patch} patches")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)


def unpatchify(x: torch.Tensor, patch: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    B = x.shape[0]
    h, w = grid
    x = x.reshape(B, h, w, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, channels, h * patch, w * patch)


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """[H*W, dim] fixed 2-D sin-cos position embedding (MAE): half the channels encode rows, half columns."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sin-cos positions, got {dim}")
    h, w = grid
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out = [f(c.reshape(-1, 1) * omega) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(out, 1).float()


def _layer(dim, heads, mlp_ratio):
    return nn.TransformerEncoderLayer(
        dim, heads, int(dim * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )


def _blocks(dim, depth, heads, mlp_ratio):
    return nn.TransformerEncoder(_layer(dim, heads, mlp_ratio), depth, enable_nested_tensor=False)


class ViTEncoder(nn.Module):
    """Tiny ViT over patch vectors: linear embedding + sin-cos positions + pre-norm blocks + final
    LayerNorm."""

    def __init__(
        self,
        patch_dim: int,
        grid: tuple[int, int],
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        self.grid = tuple(grid)
        self.embed = nn.Linear(patch_dim, dim)
        self.register_buffer("pos", sincos_2d(self.grid, dim), persistent=False)
        self.layers = nn.ModuleList(_layer(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor, ids_keep: torch.Tensor | None = None, all_layers: bool = False):
        """patches [B, N, P]; ``ids_keep`` [B, K] selects the visible patches -> [B, K, D] (or a list per
        layer)."""
        x = self.embed(patches) + self.pos  # (B, N, D)
        if ids_keep is not None:
            x = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))  # (B, K, D): visible only
        hidden = []
        for layer in self.layers:
            x = layer(x)
            hidden.append(x)
        hidden[-1] = self.norm(x)
        return hidden if all_layers else hidden[-1]


@dataclass
class MAEConfig:
    image_size: int = 16  # pixels per side
    patch_size: int = 2  # pixels per patch side: 16 / 2 -> an 8 x 8 grid of patches
    channels: int = 1
    dim: int = 64  # encoder width
    depth: int = 3  # encoder blocks
    heads: int = 4
    decoder_dim: int = 48  # MAE: the decoder is narrower and shallower than the encoder
    decoder_depth: int = 1
    norm_pix: bool = True  # normalize each target patch by its own mean / std (MAE Sec. 3)
    loss_head: bool = False  # HPM: predict each patch's reconstruction loss

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size // self.patch_size,) * 2


@dataclass
class MAEOutput:
    loss: torch.Tensor  # scalar: reconstruction loss (+ HPM ranking loss when the loss head is on)
    pred: torch.Tensor  # [B, N, P] predicted patches (normalized space when norm_pix)
    target: torch.Tensor  # [B, N, P]
    recon: torch.Tensor  # scalar: reconstruction loss alone
    patch_loss: torch.Tensor  # [B, N] per-patch MSE


def normalized_target(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean MSE over masked patches, per-patch MSE [B, N]): MAE computes the loss on masked patches only."""
    per_patch = (pred - target).pow(2).mean(-1)  # (B, N)
    m = mask.float()
    return (per_patch * m).sum() / m.sum().clamp(min=1), per_patch


def hpm_rank_loss(pred_loss: torch.Tensor, true_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HPM Eq. 6: for every pair i != j of masked patches, BCE(sigmoid(p_i - p_j), [l_i > l_j]).

    Only the order of the predicted losses matters, which is all the easy-to-hard mask needs.
    """
    diff = pred_loss[:, :, None] - pred_loss[:, None, :]  # (B, N, N)
    label = (true_loss.detach()[:, :, None] > true_loss.detach()[:, None, :]).float()
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    pair = (mask[:, :, None] & mask[:, None, :] & ~eye).float()  # distinct masked pairs
    bce = F.binary_cross_entropy_with_logits(diff, label, reduction="none")
    return (bce * pair).sum() / pair.sum().clamp(min=1)


class MAE(nn.Module):
    """Asymmetric encoder-decoder: ``forward(images, patch_mask) -> MAEOutput``."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = c = config
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size {c.image_size} is not a multiple of patch_size {c.patch_size}")
        patch_dim = c.patch_size**2 * c.channels
        self.encoder = ViTEncoder(patch_dim, c.grid, c.dim, c.depth, c.heads)
        self.decoder_embed = nn.Linear(c.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(c.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", sincos_2d(c.grid, c.decoder_dim), persistent=False)
        self.decoder = _blocks(c.decoder_dim, c.decoder_depth, c.heads, 2.0)
        self.decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.head = nn.Linear(c.decoder_dim, patch_dim)
        self.loss_head = nn.Linear(c.decoder_dim, 1) if c.loss_head else None

    def _decode(self, latent: torch.Tensor, pm: P.PatchMask | None):
        x = self.decoder_embed(latent)  # (B, K, Dd)
        if pm is not None:
            B, N = pm.mask.shape
            fill = self.mask_token.expand(B, N - x.shape[1], -1)
            x = torch.cat([x, fill], 1)  # (B, N, Dd): visible, then mask tokens
            x = x.gather(1, pm.ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        x = self.decoder_norm(self.decoder(x + self.decoder_pos))
        loss_pred = self.loss_head(x)[..., 0] if self.loss_head is not None else None
        return self.head(x), loss_pred

    def forward(self, images: torch.Tensor, pm: P.PatchMask) -> MAEOutput:
        patches = patchify(images, self.config.patch_size)  # (B, N, P)
        latent = self.encoder(patches, pm.ids_keep)  # (B, K, D): the encoder never sees a masked patch
        pred, loss_pred = self._decode(latent, pm)
        target = normalized_target(patches) if self.config.norm_pix else patches
        recon, per_patch = mae_loss(pred, target, pm.mask)
        loss = recon
        if loss_pred is not None:
            loss = loss + hpm_rank_loss(loss_pred, per_patch, pm.mask)
        return MAEOutput(loss, pred, target, recon.detach(), per_patch.detach())

    @torch.no_grad()
    def predict_loss(self, images: torch.Tensor) -> torch.Tensor:
        """[B, N] HPM predicted reconstruction loss of every patch, from the full image."""
        if self.loss_head is None:
            raise ValueError("this MAE has no loss head: build it with MAEConfig(loss_head=True)")
        patches = patchify(images, self.config.patch_size)
        return self._decode(self.encoder(patches), None)[1]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, D] mean of the encoder outputs with every patch visible (the linear-probe features)."""
        return self.encoder(patchify(images, self.config.patch_size)).mean(1)

    def save_pretrained(self, path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path / "model.safetensors")
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=1))


def ink_boxes(images: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """[B, 4] (x0, y0, x1, y1) pixel box around the pixels above ``threshold`` (the digit): the referred
    region."""
    ink = images.amax(1) > threshold  # (B, H, W)
    B, H, W = ink.shape
    rows, cols = ink.any(2), ink.any(1)
    r = torch.arange(H, device=images.device)
    c = torch.arange(W, device=images.device)
    y0 = torch.where(rows, r, H).amin(1)
    y1 = torch.where(rows, r + 1, 0).amax(1)
    x0 = torch.where(cols, c, W).amin(1)
    x1 = torch.where(cols, c + 1, 0).amax(1)
    empty = y1 <= y0
    box = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(empty[:, None], torch.tensor([0.0, 0.0, W, H], device=images.device), box)


def mask_for(
    strategy: str, model: MAE, images: torch.Tensor, keys: torch.Tensor, ratio: float, progress: float
) -> P.PatchMask:
    """The patch mask of ``strategy`` for a batch; HPM asks the model, referring masks the digit's ink box."""
    grid = model.config.grid
    if strategy == "hpm":
        return P.hpm_patches(model.predict_loss(images), grid, ratio, progress=progress, keys=keys)
    if strategy == "referring":
        return P.referring_patches(
            grid,
            boxes=ink_boxes(images),
            image_size=images.shape[-2:],
            ratio=ratio,
            inside_ratio=min(1.0, ratio + 0.15),
            keys=keys,
        )
    if strategy == "block":
        N = grid[0] * grid[1]
        return P.block_patches(grid, ratio, keys=keys, min_block=max(1, N // 16), max_block=N // 3)
    if strategy == "simmim":
        return P.simmim_patches(grid, ratio, keys=keys, cell=2)
    if strategy not in P.STRATEGIES:
        raise ValueError(f"unknown patch strategy {strategy!r}; expected one of {', '.join(P.STRATEGIES)}")
    return P.STRATEGIES[strategy](grid, ratio, keys=keys)


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0) -> float:
    """Test accuracy of a logistic regression on frozen features (standardized with train statistics)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(train_x), train_y)
    return float(clf.score(scaler.transform(test_x), test_y))


class MAEObjective(Objective):
    """The training-loop interface around :class:`MAE`: ``forward(images, keys) -> (loss, metrics)``.
    HPM's easy-to-hard progress counts training calls."""

    name = "mae"
    eval_batch_size = 64

    def __init__(self, model: MAE, strategy: str = "random", ratio: float = 0.75, total_steps: int = 1):
        super().__init__(model)
        if strategy not in P.STRATEGIES:
            raise ValueError(f"unknown patch strategy {strategy!r}; expected one of {', '.join(P.STRATEGIES)}")
        self.strategy, self.ratio, self.total_steps = strategy, ratio, max(total_steps, 1)
        self.calls = 0

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        if self.training:
            self.calls += 1
        progress = min(1.0, self.calls / self.total_steps)
        pm = mask_for(self.strategy, self.model, batch, keys, self.ratio, progress)
        out = self.model(batch, pm)
        return out.loss, {"recon": out.recon}
