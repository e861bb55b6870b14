"""Masked ViT: the MAE / HPM model as a Hugging Face model (He et al. 2022, "Masked Autoencoders Are Scalable
Vision Learners"; Wang et al. 2023, "Hard Patches Mining for Masked Image Modeling").

The encoder sees only the visible patches (no mask tokens, MAE Sec. 3 "MAE encoder"); a light decoder gets the
encoded visible patches plus a shared mask token at every masked position, unshuffled with ``ids_restore`` (Sec. 3
"MAE decoder"), and predicts the pixels of every patch. The loss is the mean squared error on masked patches only,
with each target patch normalized by its own mean and variance (``norm_pix_loss``, Sec. 3 "Reconstruction
target"). With ``loss_head=True`` the model has HPM's loss predictor: a second decoder of the same shape as the
reconstruction decoder, fed the same input (reference ``models_mae_learn_loss.py``: ``decoder_blocks_losspred``,
``decoder_norm_losspred``, ``decoder_pred_losspred`` averaged over its outputs), trained with HPM's relative loss
(a binary cross-entropy on the order of every pair of masked patches whose losses differ).
:meth:`MaskedViT.predict_loss` gives the per-patch predicted loss of a whole image that
:func:`masklab.corrupt.patches.hpm_patches` turns into a mask; in training it is asked of an EMA teacher
(:class:`masklab.objectives.mae.MAEObjective`).

The network is a tiny ViT from ``torch.nn`` (pre-norm transformer blocks, fixed 2-D sin-cos positions as in MAE)
behind the Hugging Face interfaces: :class:`MaskedViTConfig` names the fields it shares with ``ViTMAEConfig`` the
same way, ``save_pretrained`` / ``from_pretrained`` write and read a ``config.json`` + ``model.safetensors``
folder, and importing this module registers both with ``AutoConfig`` / ``AutoModel``. :class:`MaskedViTModel` is
the encoder alone (what MaskAlign trains as its student), :class:`MaskedViT` the encoder-decoder that MAE and HPM
pretrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

if TYPE_CHECKING:
    from masklab.corrupt.patches import PatchMask

__all__ = [
    "MaskedViTConfig",
    "MaskedViTModel",
    "MaskedViT",
    "MaskedViTOutput",
    "patchify",
    "unpatchify",
    "sincos_2d",
    "normalized_target",
    "mae_loss",
    "hpm_rank_loss",
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


def normalized_target(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch normalized by its own mean and variance (MAE Sec. 3, ``norm_pix_loss``)."""
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean MSE over masked patches, per-patch MSE [B, N]): MAE computes the loss on masked patches only."""
    per_patch = (pred - target).pow(2).mean(-1)  # (B, N)
    m = mask.float()
    return (per_patch * m).sum() / m.sum().clamp(min=1), per_patch


def hpm_rank_loss(pred_loss: torch.Tensor, true_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HPM's relative loss (reference ``forward_learning_loss(relative=True)``): for every pair (i, j) of
    masked patches with l_i != l_j, BCE(sigmoid(p_i - p_j), [l_i > l_j]), summed over the batch and divided by the
    number of such pairs.

    A pair with equal losses (and i = j) has no order to learn: the reference gives it neither label and leaves it
    out of the count (``labels_valid``). Only the order of the predicted losses matters, which is all the
    easy-to-hard mask needs. The reference writes ``-log(sigmoid(x) + 1e-6)``; here the exact
    ``binary_cross_entropy_with_logits``.
    """
    diff = pred_loss[:, :, None] - pred_loss[:, None, :]  # (B, N, N): p_i - p_j
    true = true_loss.detach()
    greater = true[:, :, None] > true[:, None, :]  # (B, N, N): l_i > l_j
    ordered = greater | (true[:, :, None] < true[:, None, :])  # l_i != l_j (so i != j)
    pair = (mask[:, :, None] & mask[:, None, :] & ordered).float()  # masked pairs with an order
    bce = F.binary_cross_entropy_with_logits(diff, greater.float(), reduction="none")
    return (bce * pair).sum() / pair.sum().clamp(min=1)


@strict
class MaskedViTConfig(PretrainedConfig):
    """The masked ViT's sizes and loss switches. Fields shared with ``ViTMAEConfig`` carry its names; the MLP widths
    default to twice the block width and the decoder's heads to the encoder's."""

    model_type = "masklab-vit-mae"

    image_size: int = 16  # pixels per side
    patch_size: int = 2  # pixels per patch side: 16 / 2 -> an 8 x 8 grid of patches
    num_channels: int = 1
    hidden_size: int = 64  # encoder width
    num_hidden_layers: int = 3  # encoder blocks
    num_attention_heads: int = 4
    intermediate_size: int | None = None  # encoder MLP width; None: 2 * hidden_size
    decoder_hidden_size: int = 48  # MAE: the decoder is narrower and shallower than the encoder
    decoder_num_hidden_layers: int = 1
    decoder_num_attention_heads: int | None = None  # None: num_attention_heads
    decoder_intermediate_size: int | None = None  # None: 2 * decoder_hidden_size
    mask_ratio: float = 0.75  # the share of patches masked when training (MAE's default)
    norm_pix_loss: bool = True  # normalize each target patch by its own mean / std (MAE Sec. 3)
    loss_head: bool = False  # HPM: a loss-prediction decoder beside the reconstruction decoder

    def __post_init__(self, **kwargs):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.intermediate_size is None:
            self.intermediate_size = 2 * self.hidden_size
        if self.decoder_num_attention_heads is None:
            self.decoder_num_attention_heads = self.num_attention_heads
        if self.decoder_intermediate_size is None:
            self.decoder_intermediate_size = 2 * self.decoder_hidden_size
        super().__post_init__(**kwargs)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size // self.patch_size,) * 2

    @property
    def patch_dim(self) -> int:
        """Values per patch vector: patch_size**2 * num_channels."""
        return self.patch_size**2 * self.num_channels


@dataclass
class MaskedViTOutput(ModelOutput):
    """What :meth:`MaskedViT.forward` returns."""

    loss: torch.Tensor | None = None  # scalar: reconstruction loss (+ HPM ranking loss when the loss head is on)
    logits: torch.Tensor | None = None  # [B, N, P] predicted patches (normalized space when norm_pix_loss)
    target: torch.Tensor | None = None  # [B, N, P]
    recon: torch.Tensor | None = None  # scalar: reconstruction loss alone
    patch_loss: torch.Tensor | None = None  # [B, N] per-patch MSE


def _layer(dim: int, heads: int, ffn: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        dim, heads, ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )


class _Blocks(nn.Module):
    """``depth`` pre-norm transformer blocks, each initialised on its own (``nn.TransformerEncoder`` deep-copies
    one block, so its layers would all start equal)."""

    def __init__(self, dim: int, heads: int, ffn: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(_layer(dim, heads, ffn) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MaskedViTPreTrainedModel(PreTrainedModel):
    """Shared Hugging Face plumbing. Parameters keep the PyTorch default initialisation they get in ``__init__``;
    :meth:`_init_weights` only fills the sin-cos position tables, which are not saved (``from_pretrained`` builds
    the model on the meta device, so they must be recomputed after loading)."""

    config_class = MaskedViTConfig
    base_model_prefix = "encoder"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, MaskedViTModel):
            init.copy_(module.pos, sincos_2d(module.config.grid, module.config.hidden_size))
        elif isinstance(module, MaskedViT):
            init.copy_(module.decoder_pos, sincos_2d(module.config.grid, module.config.decoder_hidden_size))

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, refusing a folder that lacks any of the model's parameters (they
        would otherwise be left uninitialised)."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            raise ValueError(f"the checkpoint lacks {len(missing)} parameters of {cls.__name__}: {missing[:3]}")
        return (model, info) if want_info else model


class MaskedViTModel(MaskedViTPreTrainedModel):
    """The encoder over patch vectors [B, N, P] (:func:`patchify`): linear embedding + sin-cos positions + pre-norm
    blocks + final LayerNorm."""

    main_input_name = "patches"

    def __init__(self, config: MaskedViTConfig):
        super().__init__(config)
        c = config
        self.grid = c.grid
        self.embed = nn.Linear(c.patch_dim, c.hidden_size)
        self.register_buffer("pos", sincos_2d(self.grid, c.hidden_size), persistent=False)
        self.layers = nn.ModuleList(
            _layer(c.hidden_size, c.num_attention_heads, c.intermediate_size) for _ in range(c.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(c.hidden_size)
        self.post_init()

    def forward(
        self,
        patches: torch.Tensor,
        ids_keep: torch.Tensor | None = None,
        all_layers: bool = False,
        valid: torch.Tensor | None = None,
    ):
        """patches [B, N, P]; ``ids_keep`` [B, K] selects the visible patches -> [B, K, D] (or a list per
        layer, the last one normalized). ``valid`` [B, K] bool marks real entries when rows are padded to K
        (:meth:`~masklab.corrupt.patches.PatchMask.visible`): padding is never attended to."""
        x = self.embed(patches) + self.pos  # (B, N, D)
        if ids_keep is not None:
            x = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))  # (B, K, D): visible only
        padding = None if valid is None else ~valid  # (B, K) True = ignore
        hidden = []
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
            hidden.append(x)
        hidden[-1] = self.norm(x)
        return hidden if all_layers else hidden[-1]


class MaskedViT(MaskedViTPreTrainedModel):
    """Asymmetric encoder-decoder: ``forward(pixel_values, patch_mask) -> MaskedViTOutput``."""

    def __init__(self, config: MaskedViTConfig):
        super().__init__(config)
        c = config
        dd = c.decoder_hidden_size
        shape = (dd, c.decoder_num_attention_heads, c.decoder_intermediate_size, c.decoder_num_hidden_layers)
        self.encoder = MaskedViTModel(c)
        self.decoder_embed = nn.Linear(c.hidden_size, dd)
        self.mask_token = nn.Parameter(torch.zeros(dd))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", sincos_2d(c.grid, dd), persistent=False)
        self.decoder = _Blocks(*shape)
        self.decoder_norm = nn.LayerNorm(dd)
        self.head = nn.Linear(dd, c.patch_dim)
        if c.loss_head:  # HPM's loss predictor: its own decoder on the same input (reference decoder_*_losspred)
            self.loss_decoder = _Blocks(*shape)
            self.loss_decoder_norm = nn.LayerNorm(dd)
            self.loss_head = nn.Linear(dd, c.patch_dim)  # averaged over its outputs, as the reference
        else:
            self.loss_decoder = self.loss_decoder_norm = self.loss_head = None
        self.post_init()

    def _decoder_input(self, latent: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """[B, N, Dd]: the embedded visible patches back at their positions, the mask token at every masked one, plus
        positions (MAE's ``cat(visible, mask tokens)`` unshuffled by ``ids_restore``; padded rows allowed)."""
        x = self.decoder_embed(latent)  # (B, K, Dd)
        B, N = mask.shape
        placed = x.new_zeros(B, N, x.shape[-1])
        placed[~mask] = x.reshape(-1, x.shape[-1]) if valid is None else x[valid]  # row-major, visible ascending
        return torch.where(mask[..., None], self.mask_token.to(x.dtype), placed) + self.decoder_pos

    def _predict_loss(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N] predicted reconstruction loss from the decoder input ``x`` [B, N, Dd]."""
        return self.loss_head(self.loss_decoder_norm(self.loss_decoder(x))).mean(-1)

    def forward(self, pixel_values: torch.Tensor, patch_mask: PatchMask) -> MaskedViTOutput:
        """Images [B, C, H, W] and their :class:`~masklab.corrupt.patches.PatchMask` -> loss and predictions."""
        patches = patchify(pixel_values, self.config.patch_size)  # (B, N, P)
        ids, valid = patch_mask.visible()  # (B, K): padded, with valid [B, K], when rows keep different counts
        latent = self.encoder(patches, ids, valid=valid)  # (B, K, D): the encoder never sees a masked patch
        x = self._decoder_input(latent, patch_mask.mask, valid)  # (B, N, Dd)
        pred = self.head(self.decoder_norm(self.decoder(x)))  # (B, N, P)
        target = normalized_target(patches) if self.config.norm_pix_loss else patches
        recon, per_patch = mae_loss(pred, target, patch_mask.mask)
        loss = recon
        if self.loss_head is not None:  # the student learns to rank its own losses on the masked patches
            loss = loss + hpm_rank_loss(self._predict_loss(x), per_patch, patch_mask.mask)
        return MaskedViTOutput(
            loss=loss, logits=pred, target=target, recon=recon.detach(), patch_loss=per_patch.detach()
        )

    def loss_predictor_modules(self) -> list[nn.Module]:
        """The modules :meth:`predict_loss` runs (for compute accounting): the encoder and the loss branch."""
        return [self.encoder, self.decoder_embed, self.loss_decoder, self.loss_decoder_norm, self.loss_head]

    @torch.no_grad()
    def predict_loss(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, N] HPM predicted reconstruction loss of every patch, from the full image (reference: the teacher's
        forward with no patch masked). The reconstruction decoder is not run: its output would be unused."""
        if self.loss_head is None:
            raise ValueError("this MaskedViT has no loss head: build it with MaskedViTConfig(loss_head=True)")
        patches = patchify(pixel_values, self.config.patch_size)
        none = torch.zeros(patches.shape[:2], dtype=torch.bool, device=patches.device)
        return self._predict_loss(self._decoder_input(self.encoder(patches), none, None))

    @torch.no_grad()
    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, D] mean of the encoder outputs with every patch visible (the linear-probe features)."""
        return self.encoder(patchify(pixel_values, self.config.patch_size)).mean(1)


AutoConfig.register(MaskedViTConfig.model_type, MaskedViTConfig, exist_ok=True)
AutoModel.register(MaskedViTConfig, MaskedViT, exist_ok=True)
