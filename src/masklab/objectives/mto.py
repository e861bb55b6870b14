"""SimMIM, and Masked Token Optimization's weight recalibration on top of it.

SimMIM (Xie et al. 2022, "SimMIM: a Simple Framework for Masked Image Modeling", Sec. 3): random masking of coarse
cells of patches (:func:`masklab.corrupt.patches.simmim_patches`); the encoder sees every patch, a masked patch's
embedding replaced by one learned mask token before the positions are added (reference ``simmim.py``:
``x * (1 - w) + mask_token * w``); a one-layer linear head predicts each patch's raw pixels; the loss is the L1
distance on the masked pixels, ``sum(|x - x_rec| * mask) / sum(mask) / in_chans``.

MTO (Choi et al. 2024, "Emerging Property of Masked Token for Effective Pre-training", ECCV, Sec. 4): the masked
tokens carry no data, so they are excluded "from the weight aggregation process pertaining to visible tokens"
(the authors' summary of the method): in every self-attention layer a visible query's softmax runs over the
visible keys only, its weights recalibrated to sum to one there,

    A'_ij = A_ij (1 - m_j) / sum_k A_ik (1 - m_k)    for a visible query i  (m_j = 1: key j is masked)
    A'_ij = A_ij                                       for a masked query i,

which is the attention with the logits of (visible query, masked key) pairs set to -inf
(:func:`recalibration_mask`). The masked tokens still read the visible ones, and the reconstruction loss is
unchanged. Visible tokens then never depend on the mask token or on what was masked. The paper's data-singularity
losses (its L_spa, L_e, L_r, weighted by layer depth) are not implemented here: see docs/methods_pretraining.md.

The encoder is :class:`masklab.models.vit_mae.MaskedViTModel`, the same encoder MAE trains, so a checkpoint is a
:class:`~masklab.models.vit_mae.MaskedViT` folder that every image probe reads (its decoder untrained, as
MaskAlign's), with the mask token and the pixel head beside it in ``simmim.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from masklab.corrupt.patches import PatchMask
from masklab.models.vit_mae import MaskedViT, MaskedViTModel, patchify
from masklab.objectives.base import Objective

__all__ = ["recalibration_mask", "SimMIM", "simmim_loss", "SimMIMObjective"]

HEAD_FILE = "simmim.safetensors"


def recalibration_mask(mask: torch.Tensor, heads: int) -> torch.Tensor:
    """[B * heads, N, N] bool attention mask from a patch mask [B, N] (True = masked): True (not attended) where a
    visible query meets a masked key; the layout ``nn.MultiheadAttention`` takes for per-example masks."""
    blocked = (~mask)[:, :, None] & mask[:, None, :]  # (B, N, N): query i visible, key j masked
    return blocked.repeat_interleave(heads, dim=0)


def simmim_loss(pred: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's L1 on masked pixels: the mean |pred - x| over every value of every masked patch [B, N, P]."""
    m = mask[..., None].to(pred.dtype)  # (B, N, 1)
    return ((pred - patches).abs() * m).sum() / (m.sum() * patches.shape[-1]).clamp(min=1)


class SimMIM(nn.Module):
    """The SimMIM encoder-head: ``forward(pixel_values, patch_mask) -> (loss, pred [B, N, P])``.

    ``encoder`` is a :class:`MaskedViTModel` (run here over all N patches); ``mto`` switches MTO's recalibration
    on in every encoder layer."""

    def __init__(self, encoder: MaskedViTModel, mto: bool = False):
        super().__init__()
        c = encoder.config
        self.encoder, self.mto, self.patch_size = encoder, bool(mto), c.patch_size
        self.heads = c.num_attention_heads
        self.mask_token = nn.Parameter(torch.zeros(c.hidden_size))
        nn.init.trunc_normal_(self.mask_token, std=0.02)  # SimMIM's initialisation
        self.head = nn.Linear(c.hidden_size, c.patch_dim)  # one linear layer to the patch's raw pixels

    def encode(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, D] encoder output of patch vectors [B, N, P] with the patches of ``mask`` [B, N] replaced by
        the mask token (all visible: exactly ``encoder(patches)``)."""
        enc = self.encoder
        if mask.shape != patches.shape[:2]:
            raise ValueError(f"patch mask {tuple(mask.shape)} does not match the {tuple(patches.shape[:2])} patches")
        x = enc.embed(patches)  # (B, N, D)
        x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x) + enc.pos  # SimMIM: mask token, then pos
        attn = recalibration_mask(mask, self.heads) if self.mto else None  # (B * heads, N, N)
        for layer in enc.layers:
            x = layer(x, src_mask=attn)
        return enc.norm(x)

    def forward(self, pixel_values: torch.Tensor, patch_mask: PatchMask) -> tuple[torch.Tensor, torch.Tensor]:
        patches = patchify(pixel_values, self.patch_size)  # (B, N, P)
        pred = self.head(self.encode(patches, patch_mask.mask))  # (B, N, P)
        return simmim_loss(pred, patches, patch_mask.mask), pred


class SimMIMObjective(Objective):
    """The training-loop interface around :class:`SimMIM`: ``forward(images [B, C, H, W], keys) -> (loss,
    metrics)``, each image's mask from :func:`~masklab.corrupt.patches.simmim_patches` on its key.

    ``vit`` is the :class:`MaskedViT` whose encoder the model trains: a checkpoint is its ``save_pretrained``
    folder (what the image probes read) plus the mask token and head in ``simmim.safetensors``."""

    name = "simmim"
    eval_batch_size = 64

    def __init__(self, model: SimMIM, vit: MaskedViT, ratio: float = 0.6, cell: int = 2):
        super().__init__(model)
        if vit.encoder is not model.encoder:
            raise ValueError("vit's encoder must be the SimMIM encoder")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        self.vit, self.ratio, self.cell = vit, ratio, cell
        self.grid = vit.config.grid

    def flop_groups(self):
        """(parameters, share of the patches they process) for :mod:`masklab.compare.flops`: SimMIM's encoder and
        head run on every patch (masked ones as the mask token); the ViT's untrained decoder counts nothing."""
        from masklab.compare.flops import matmul_params

        return [(matmul_params(self.model), 1.0)]

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        from masklab.corrupt.patches import simmim_patches

        pm = simmim_patches(self.grid, self.ratio, cell=self.cell, keys=keys)
        loss, _ = self.model(batch, PatchMask(pm.mask.to(batch.device), pm.grid))
        return loss, {"l1": loss.detach()}

    def _head(self) -> dict[str, torch.Tensor]:
        return {"mask_token": self.model.mask_token} | {f"head.{k}": v for k, v in self.model.head.state_dict().items()}

    def save_model(self, path) -> None:
        self.vit.save_pretrained(path, safe_serialization=True)
        save_file({k: v.detach().contiguous() for k, v in self._head().items()}, Path(path) / HEAD_FILE)

    def load_model(self, path) -> None:
        f = Path(path) / HEAD_FILE
        if not f.is_file():
            raise ValueError(f"checkpoint {path} has no SimMIM head ({HEAD_FILE}), so SimMIM cannot resume from it")
        self.vit.load_state_dict(load_file(Path(path) / "model.safetensors", device=str(self.device)))
        head = load_file(f, device=str(self.device))
        with torch.no_grad():
            self.model.mask_token.copy_(head.pop("mask_token"))
        self.model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()})
