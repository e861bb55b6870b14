"""MLLMSeg's light-weight mask decoder (Wang et al., 2025, "Unlocking the Potential of MLLMs in Referring Expression
Segmentation via a Light-weight Mask Decoder", arXiv:2508.04107; reference: github.com/jcwang0602/MLLMSeg,
``mllmseg_internvl/mllmseg.py`` ``RESDecoder`` and ``DySample``).

The MLLM's vision encoder already holds the detail that pixel masks need; the LLM holds the semantics. The
detail-enhanced and semantic-consistent feature fusion (DSFF) and the mask decoder, as ``RESDecoder.forward`` does:

1. the ViT's patch features (before the pixel shuffle, the finer grid) cross-attend to the LLM's hidden states at
   the image tokens (``ca_layer_v2l``, one transformer decoder layer): detail enhanced by semantics;
2. the LLM's image-token states are upsampled x2 to the ViT grid with DySample (learned point offsets around the
   bilinear positions, ``style="lp"``, 4 groups);
3. [enhanced ViT features, ViT features, upsampled LLM features] are concatenated on channels and projected back
   (``text_out_adapter``), then cross-attend to the segmentation token's state (``ca_layer_vl``);
4. a 3 x 3 conv + BatchNorm + ReLU gives ``patch x patch`` values per grid cell, rearranged into pixels (a pixel
   shuffle), and a 5 x 5 conv gives the mask logits.

The segmentation token's state is the decoder's last hidden state at the position that predicts ``[SEG]`` (the
reference takes ``last_hidden_state[:, :-1]`` where ``input_ids[:, 1:] == [SEG]``). The loss is the reference's:
the LM loss on the answer plus sigmoid focal and dice losses on the pixel mask, all weighted 1
(``train_mllmseg_internvl.sh``). Widths are scaled to the tiny model: the decoder width is the ViT's (the
reference's 1024 is InternViT-300M's), with 16-wide attention heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, InternVLConfig, InternVLForConditionalGeneration

__all__ = ["DySample", "RESDecoder", "MLLMSegConfig", "MLLMSegForSegmentation", "sigmoid_focal_loss", "dice_loss"]


class DySample(nn.Module):
    """DySample upsampling, ``style="lp"`` (Liu et al., ICCV 2023, "Learning to Upsample by Learning to Sample"):
    each output pixel samples the input bilinearly at its sub-pixel position plus a learned offset (a 1 x 1 conv,
    scaled by 0.25). With zero offsets it is bilinear upsampling (``align_corners=False``; tested)."""

    def __init__(self, channels: int, scale: int = 2, groups: int = 4):
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels {channels} must divide into {groups} groups")
        self.scale, self.groups = scale, groups
        self.offset = nn.Conv2d(channels, 2 * groups * scale**2, 1)
        nn.init.normal_(self.offset.weight, std=1e-3)
        nn.init.zeros_(self.offset.bias)

    def init_pos(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 2 g s^2, 1, 1) sub-pixel centres of the s x s outputs of a pixel, in input pixels (made on the fly,
        not a buffer: Hugging Face's loading leaves non-persistent buffers uninitialised)."""
        s = self.scale
        h = (torch.arange(s, dtype=x.dtype, device=x.device) - (s - 1) / 2) / s
        return (
            torch.stack(torch.meshgrid(h, h, indexing="ij"))
            .transpose(1, 2)
            .repeat(1, self.groups, 1)
            .reshape(1, -1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, sH, sW)
        B, C, H, W = x.shape
        s, g = self.scale, self.groups
        offset = (self.offset(x) * 0.25 + self.init_pos(x)).view(B, 2, -1, H, W)  # (B, 2, g s^2, H, W)
        centres = torch.stack(torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="ij"))
        centres = centres.transpose(1, 2)[None, :, None].to(x)  # (1, 2, 1, H, W): (x, y) of each pixel centre
        norm = torch.tensor([W, H], dtype=x.dtype, device=x.device).view(1, 2, 1, 1, 1)
        coords = 2 * (centres + offset) / norm - 1  # grid_sample's [-1, 1]
        coords = F.pixel_shuffle(coords.reshape(B, -1, H, W), s).view(B, 2, -1, s * H, s * W)
        coords = coords.permute(0, 2, 3, 4, 1).flatten(0, 1)  # (B g, sH, sW, 2)
        out = F.grid_sample(x.reshape(B * g, -1, H, W), coords, mode="bilinear", align_corners=False,
                            padding_mode="border")  # fmt: skip
        return out.view(B, C, s * H, s * W)


def _decoder_layer(d: int, heads: int) -> nn.TransformerDecoderLayer:
    """The reference's one-layer ``TransformerDecoder``: post-norm self-attention, cross-attention and a ReLU MLP
    of width d (torch's layer is the code it copies). Dropout is 0, not the reference's 0.1: a few hundred steps
    from scratch do not overfit, and without dropout the attention runs on the fused kernel, as the LLM's does."""
    return nn.TransformerDecoderLayer(d, heads, dim_feedforward=d, dropout=0.0, activation="relu", batch_first=True)


class RESDecoder(nn.Module):
    """DSFF and the mask decoder (``RESDecoder`` of the reference; steps 1-4 of the module docstring)."""

    def __init__(self, llm_dim: int, vit_dim: int, vit_grid: int, patch: int, heads: int):
        super().__init__()
        self.grid, self.patch = vit_grid, patch
        self.img_llm_down = nn.Linear(llm_dim, vit_dim)
        self.text_down = nn.Linear(llm_dim, vit_dim)
        self.ca_layer_v2l = _decoder_layer(vit_dim, heads)
        self.upsample = DySample(vit_dim, scale=2)
        self.text_out_adapter = nn.Linear(3 * vit_dim, vit_dim)
        self.ca_layer_vl = _decoder_layer(vit_dim, heads)
        self.conv1 = nn.Sequential(nn.Conv2d(vit_dim, patch**2, 3, padding=1), nn.BatchNorm2d(patch**2), nn.ReLU())
        self.conv2 = nn.Conv2d(1, 1, 5, padding=2)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)  # the reference's init (DySample's offset conv included)

    def forward(self, img_vit: torch.Tensor, img_llm: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, grid patch, grid patch) from the ViT patch features ``img_vit`` (B, g^2, Cv), the
        LLM's image-token states ``img_llm`` (B, (g/2)^2, D) and the segmentation token's state ``seg`` (B, D)."""
        B, g = len(img_vit), self.grid
        llm = self.img_llm_down(img_llm)  # (B, (g/2)^2, Cv)
        detail = self.ca_layer_v2l(img_vit, llm)  # (B, g^2, Cv): ViT features attend to the LLM's image tokens
        up = self.upsample(llm.transpose(1, 2).reshape(B, -1, g // 2, g // 2)).flatten(2).transpose(1, 2)
        fused = self.text_out_adapter(torch.cat([detail, img_vit, up], -1))  # (B, g^2, Cv)
        fused = self.ca_layer_vl(fused, self.text_down(seg)[:, None])  # attend to the segmentation token
        x = self.conv1(fused.transpose(1, 2).reshape(B, -1, g, g))  # (B, patch^2, g, g)
        return self.conv2(F.pixel_shuffle(x, self.patch))  # (B, 1, g patch, g patch)


class MLLMSegConfig(InternVLConfig):
    """InternVL's config plus the ``[SEG]`` token id and the decoder's head count."""

    model_type = "masklab-mllmseg"
    seg_token_id: int = 5
    decoder_heads: int = 4


class MLLMSegForSegmentation(InternVLForConditionalGeneration):
    """InternVL with MLLMSeg's light mask decoder reading its ViT and LLM features."""

    config_class = MLLMSegConfig

    def __init__(self, config: MLLMSegConfig):
        super().__init__(config)
        v = config.vision_config
        grid = (
            v.image_size[0] // v.patch_size[0]
            if isinstance(v.image_size, list | tuple)
            else v.image_size // v.patch_size
        )
        patch = v.patch_size[0] if isinstance(v.patch_size, list | tuple) else v.patch_size
        self.res_decoder = RESDecoder(config.text_config.hidden_size, v.hidden_size, grid, patch, config.decoder_heads)

    def segment_forward(self, ids, pixel_values, keep, positions, seg_at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(LM logits (B, L, V), mask logits (B, 1, S, S)) of one forward over ``ids``, whose position ``seg_at``
        predicts ``[SEG]``; the ViT runs once and feeds both the LLM and the decoder."""
        vision = self.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        out = self.model(
            input_ids=ids, attention_mask=keep, position_ids=positions, mm_encoder_outputs={"image": vision}
        )
        h = out.last_hidden_state  # (B, L, D)
        n = self.config.image_seq_length
        img_vit = vision.last_hidden_state[:, 1:]  # (B, g^2, Cv): the patches before the pixel shuffle, no CLS
        return self.lm_head(h), self.res_decoder(img_vit, h[:, :n], h[:, seg_at])


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """RetinaNet's focal loss (Lin et al., 2017, Eq. 5) on logits, mean over pixels then over the batch. (The
    reference applies it to sigmoid probabilities as if they were logits; masklab applies it to logits.)"""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t) ** gamma).flatten(1).mean(1).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - (2 |P T| + 1) / (|P| + |T| + 1)`` on probabilities, mean over the batch (the reference's
    ``dice_loss_plvl``)."""
    p, t = logits.sigmoid().flatten(1), target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


AutoConfig.register(MLLMSegConfig.model_type, MLLMSegConfig, exist_ok=True)
AutoModel.register(MLLMSegConfig, MLLMSegForSegmentation, exist_ok=True)
