"""OneRef on the canvas world: one modality-shared transformer over image patches and the referring expression,
Mask Referring Modeling (referring-aware MIM and MLM, each with its target-relation scores), and direct box
regression.

OneRef (Xiao et al., NeurIPS 2024, Sec. 3; reference github.com/linhuixiao/OneRef ``models/OneRef_model.py``,
``utils/loss_utils.py``, ``datasets/masking_generator.py``) feeds ``[img CLS] patches [txt CLS] words`` to one
BEiT-3 tower. From the output (``vision_head``/``language_head`` then L2 normalization) it forms

* ``visu_token_dot = language_cls * vision_token`` (elementwise, (B, N, D)) and ``visu_sim = visu_token_dot.sum(-1)``;
* ``text_token_dot = vision_cls * language_token`` ((B, T, D));
* the box: ``softmax(visu_sim)``-weighted sum of ``visu_proj(vision tokens)``, an MLP, a sigmoid: (cx, cy, w, h);
* referring-aware MIM: the masked patches' content read from ``normalize(visu_token_dot)`` (``mim_head``), and
  every patch's **visual target-relation score** from ``visu_token_dot`` (``mim_vts_head``): its offset to the
  referred box's centre and the box's inverse size in patch units, ``((i - cx) / W, (j - cy) / H, 1 / w, 1 / h)``
  (``Visual_Target_Relation_Score_Generator``);
* referring-aware MLM: the masked words from the language tokens (``mlm_head``), and each word's **semantic
  target-relation score** from ``text_token_dot`` (``mlm_sts_head``).

Stand-ins: a tiny shared tower (4 pre-norm blocks of width 64, one FFN for both modalities instead of BEiT-3's
modality experts), 8 x 8-pixel patches, the canvas word tokenizer; MIM regresses each masked patch's normalized
pixels (MAE's target) instead of predicting BEiT-3's VQ-KD visual tokens, which need a pretrained tokenizer. The
semantic target-relation scores of the reference come with its data; canvas expressions get them from their
grammar (:func:`semantic_scores`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.seg.nets import Block

__all__ = [
    "OneTower",
    "MLP",
    "visual_scores",
    "word_roles",
    "semantic_scores",
    "box_of_masks",
    "box_iou",
    "generalized_box_iou",
]


class MLP(nn.Module):
    """The reference's ``MLP``: ``layers`` linear layers with ReLU between them."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int):
        super().__init__()
        sizes = [dim_in] + [hidden] * (layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class OneTower(nn.Module):
    """One transformer over ``[img CLS] patches [txt CLS] words`` and OneRef's heads (see the module docstring)."""

    def __init__(self, vocab_size: int, prompt_len: int, size: int = 64, patch: int = 8, dim: int = 64,
                 layers: int = 4, heads: int = 2):  # fmt: skip
        super().__init__()
        if size % patch:
            raise ValueError(f"size {size} must be a multiple of patch {patch}")
        self.size, self.patch, self.grid = size, patch, size // patch
        n = self.grid**2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))  # replaces a masked patch (BEiT)
        self.cls = nn.Parameter(torch.zeros(2, dim))  # image CLS, text CLS
        self.image_pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.text_pos = nn.Parameter(torch.zeros(1, prompt_len + 1, dim))
        self.word = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.vision_head = nn.Linear(dim, dim, bias=False)
        self.language_head = nn.Linear(dim, dim, bias=False)
        self.visu_proj = nn.Linear(dim, dim)
        self.bbox_embed = MLP(dim, dim, 4, 3)
        self.mim_head = nn.Linear(dim, 3 * patch * patch)  # pixels of a masked patch (the reference: VQ-KD ids)
        self.mim_vts_head = MLP(dim, dim, 4, 3)  # visual target-relation score
        self.mlm_head = nn.Linear(dim, vocab_size)
        self.mlm_sts_head = MLP(dim, dim, 1, 3)  # semantic target-relation score
        for p in (self.mask_token, self.cls, self.image_pos, self.text_pos):
            nn.init.normal_(p, std=0.02)

    def forward(self, pixels: torch.Tensor, prompt: torch.Tensor, patch_mask: torch.Tensor | None = None) -> dict:
        """pixels (B, 3, S, S) in [0, 1]; prompt (B, P) ids, left-padded with 0; patch_mask (B, N) bool, True =
        masked. Returns the box (B, 4) (cx, cy, w, h in [0, 1]), ``visu_sim`` (B, N), ``visu_dot`` (B, N, D),
        ``text_dot`` (B, P, D), ``language`` (B, P, D) (the word outputs) and ``vision`` (B, N, D)."""
        B = len(pixels)
        x = self.patch_embed(pixels - 0.5).flatten(2).transpose(1, 2)  # (B, N, D)
        if patch_mask is not None:
            x = torch.where(patch_mask[..., None], self.mask_token.expand_as(x), x)
        img = torch.cat([self.cls[0].expand(B, 1, -1), x], 1) + self.image_pos  # (B, N + 1, D)
        txt = torch.cat([self.cls[1].expand(B, 1, -1), self.word(prompt)], 1) + self.text_pos  # (B, P + 1, D)
        n1 = img.shape[1]
        keep = torch.cat([torch.ones(B, n1 + 1, dtype=torch.bool, device=x.device), prompt != 0], 1)
        h = torch.cat([img, txt], 1)
        for block in self.blocks:
            h = block(h, keep)
        h = self.norm(h)
        vision, language = h[:, :n1], h[:, n1:]
        v = F.normalize(self.vision_head(vision), dim=-1)
        t = F.normalize(self.language_head(language), dim=-1)
        visu_dot = t[:, :1] * v[:, 1:]  # (B, N, D): language CLS x every image token
        text_dot = v[:, :1] * t[:, 1:]  # (B, P, D): vision CLS x every word
        visu_sim = visu_dot.sum(-1)  # (B, N)
        pooled = (visu_sim.softmax(-1)[..., None] * self.visu_proj(vision)[:, 1:]).sum(1)  # (B, D)
        box = self.bbox_embed(pooled).sigmoid()
        return {"box": box, "visu_sim": visu_sim, "visu_dot": visu_dot, "text_dot": text_dot,
                "language": language[:, 1:], "vision": vision[:, 1:]}  # fmt: skip

    def patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, N, 3 p p) pixels of every patch, each normalized to mean 0 and std 1 (MAE's ``norm_pix_loss``)."""
        p = self.patch
        x = pixels.unfold(2, p, p).unfold(3, p, p)  # (B, 3, g, g, p, p)
        x = x.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (B, N, 3 p p)
        return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-6).sqrt()


def visual_scores(boxes: torch.Tensor, grid: int) -> torch.Tensor:
    """The visual target-relation score of every patch (B, N, 4) for ``boxes`` (B, 4) (cx, cy, w, h in [0, 1]):
    ``((i - cx) / W, (j - cy) / H, 1 / w, 1 / h)`` with the box in patch units (sides at least 1 patch) and patch
    (j, i) in row-major order, as ``Visual_Target_Relation_Score_Generator``."""
    b = boxes * grid
    w, h = b[:, 2].clamp(min=1), b[:, 3].clamp(min=1)
    i = torch.arange(grid, device=boxes.device, dtype=boxes.dtype)
    dx = (i[None, None, :] - b[:, 0, None, None]) / grid  # (B, 1, g): column i
    dy = (i[None, :, None] - b[:, 1, None, None]) / grid  # (B, g, 1): row j
    shape = (len(b), grid, grid)
    parts = [
        dx.expand(shape),
        dy.expand(shape),
        (1 / w)[:, None, None].expand(shape),
        (1 / h)[:, None, None].expand(shape),
    ]
    return torch.stack(parts, -1).flatten(1, 2)


# grammar of canvas expressions (masklab.data.canvases): words naming the referred object or its attribute score 1,
# relation words and the other object (the anchor) 0.5, "the" 0
RELATION_WORDS = ("left", "right", "of", "above", "below")
ATTRIBUTE_WORDS = ("largest", "smallest", "leftmost", "rightmost", "topmost", "bottommost")


def word_roles(prompt: torch.Tensor, tokenizer) -> dict[str, torch.Tensor]:
    """(B, P) bool masks of the words of canvas expressions ``prompt`` (ids): ``subject`` (the referred object's
    class word, or ``object``), ``attribute`` (its superlative), ``relation`` (left / right / of / above / below)
    and ``anchor`` (the class word after a relation: the other object)."""
    from masklab.data.canvases import CATEGORIES

    def ids(words):  # every word with and without its leading space
        pieces = [*words, *(" " + w for w in words)]
        return torch.tensor([tokenizer.convert_tokens_to_ids(w) for w in pieces], device=prompt.device)

    relation = torch.isin(prompt, ids(RELATION_WORDS))
    is_class = torch.isin(prompt, ids((*CATEGORIES, "object")))
    after = relation.long().cumsum(1) > 0
    return {"subject": is_class & ~after, "attribute": torch.isin(prompt, ids(ATTRIBUTE_WORDS)),
            "relation": relation, "anchor": is_class & after}  # fmt: skip


def semantic_scores(prompt: torch.Tensor, tokenizer) -> torch.Tensor:
    """(B, P) float: each word's relation to the referred object by the canvas grammar: its class word (or
    ``object``) and its superlative 1, relation words and the anchor's class word 0.5, ``the`` and padding 0."""
    r = word_roles(prompt, tokenizer)
    return (r["subject"] | r["attribute"]).float() + 0.5 * (r["relation"] | r["anchor"]).float()


def box_of_masks(masks: torch.Tensor) -> torch.Tensor:
    """(B, 4) float (cx, cy, w, h) in [0, 1] of the tight pixel box (end exclusive) of each mask (B, S, S)."""
    S = masks.shape[-1]
    idx = torch.arange(S, device=masks.device)
    rows, cols = masks.any(2), masks.any(1)  # (B, S)
    y0 = torch.where(rows, idx, S).min(1).values
    y1 = torch.where(rows, idx, -1).max(1).values + 1
    x0 = torch.where(cols, idx, S).min(1).values
    x1 = torch.where(cols, idx, -1).max(1).values + 1
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1).float() / S


def _xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row IoU (B,) of boxes (cx, cy, w, h)."""
    a, b = _xyxy(a), _xyxy(b)
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    return inter / union.clamp(min=1e-12)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row generalized IoU (Rezatofighi et al. 2019) (B,) of boxes (cx, cy, w, h): IoU - |C \\ (A u B)| / |C|."""
    iou = box_iou(a, b)
    a, b = _xyxy(a), _xyxy(b)
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    union = (a[:, 2:] - a[:, :2]).prod(1) + (b[:, 2:] - b[:, :2]).prod(1) - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-12)
