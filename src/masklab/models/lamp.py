"""LaMP in miniature: a motion tower and a text tower aligned by contrast, and a masked motion-token transformer
conditioned on the aligned text feature (Li et al. 2025, "LaMP: Language-Motion Pretraining for Motion Generation,
Retrieval, and Captioning", ICLR; reference code gentlefress/LaMP ``models/lamp/motiongpm_lamp.py`` for the
towers and the contrastive loss, ``models/mask_transformer/transformer.py`` for the masked transformer and its
generation).

- Motion tokens (:class:`FrameQuantizer`): each frame's pose (J joints x 2 coordinates) is replaced by its nearest
  entry of a k-means codebook fitted on training frames. LaMP tokenizes with a VQ-VAE over 4-frame windows; a
  per-frame quantiser is the small stand-in (its error is measured by the benchmark: the parameters read back
  from the decoded ground-truth tokens).
- Text tower: a frozen sentence encoder (all-MiniLM-L6-v2, offline) embeds each distinct caption once, mean-pooled
  over its tokens (sentence-transformers' pooling, :func:`mean_pool`); the embeddings are a buffer of the model and
  a trained MLP maps them to the joint space. LaMP trains a BERT text transformer; here only the head trains.
- Motion tower: token embeddings + learned positions, pre-norm transformer blocks, the mean over frames, a linear
  map to the joint space. LaMP reads the motion through 32 Q-Former queries and scores a pair by the best query;
  one pooled vector is the small stand-in.
- Masked transformer (:class:`MaskTransformer`, LaMP's ``MaskTransformer``): the condition (the text feature,
  linearly embedded) is prepended to the token sequence, and with ``causal`` each position attends to the
  condition and the positions before it (LaMP's autoregressive masked prediction: the reference passes
  ``torch.tril(ones)`` as the attention mask). The head is BERT's (dense, GELU, LayerNorm, linear).
- Generation (:func:`maskgit_generate`, the reference ``generate``): every token starts masked; at step k of S,
  with t = k / (S - 1), the round(cos(pi t / 2) N) (at least one) least confident tokens are masked again and
  predicted; each draws from the top 10% of its logits (the reference ``topk_filter_thres=0.9``) at a
  temperature; committed tokens keep a score of +inf; classifier-free guidance mixes the logits of the condition
  and of the dropped condition (u + s (c - u)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt import keyed
from masklab.models.blocks import transformer_encoder

__all__ = [
    "FrameQuantizer",
    "fit_codebook",
    "mean_pool",
    "embed_captions",
    "load_text_tower",
    "LaMPConfig",
    "LaMP",
    "MaskTransformer",
    "cosine_schedule",
    "maskgit_generate",
]


def fit_codebook(poses: torch.Tensor, size: int, seed: int, max_frames: int = 20000) -> torch.Tensor:
    """[size, D] k-means centroids (sklearn ``KMeans``, one k-means++ start, ``random_state=seed``) of at most
    ``max_frames`` rows of ``poses`` [N, D] (every ``N // max_frames``-th row)."""
    from sklearn.cluster import KMeans

    if size < 2 or size > len(poses):
        raise ValueError(f"codebook size must be in [2, {len(poses)}], got {size}")
    rows = poses[:: max(1, len(poses) // max_frames)].double().numpy()
    km = KMeans(size, n_init=1, random_state=seed).fit(rows)
    return torch.from_numpy(km.cluster_centers_).float()


class FrameQuantizer(nn.Module):
    """A per-frame codebook: ``encode(joints [..., T, J, 2]) -> ids [..., T]`` (nearest entry in Euclidean
    distance) and ``decode(ids) -> joints``."""

    def __init__(self, codebook: torch.Tensor, joints: int):
        super().__init__()
        if codebook.ndim != 2 or codebook.shape[1] != 2 * joints:
            raise ValueError(f"codebook must be [K, {2 * joints}], got {tuple(codebook.shape)}")
        self.joints = joints
        self.register_buffer("codebook", codebook.float().clone())  # (K, J * 2)

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def encode(self, joints: torch.Tensor) -> torch.Tensor:
        x = joints.flatten(-2).float()  # (..., T, J * 2)
        c = self.codebook
        dist = (x * x).sum(-1, keepdim=True) - 2 * x @ c.T + (c * c).sum(-1)  # (..., T, K)
        return dist.argmin(-1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codebook[ids].unflatten(-1, (self.joints, 2))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, H] the mean of ``hidden`` [B, L, H] over the tokens that ``attention_mask`` [B, L] keeps
    (sentence-transformers ``Pooling(pooling_mode_mean_tokens=True)``, all-MiniLM-L6-v2's pooling)."""
    m = attention_mask[..., None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def load_text_tower(name: str):
    """(model, tokenizer) of a sentence encoder: a hub id that an offline package ships
    (:data:`masklab.models.pretrained.OFFLINE_PACKAGES`) or a local Hugging Face folder. Nothing is downloaded."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer

    from masklab.models.pretrained import OFFLINE_PACKAGES

    folder = Path(name).expanduser()
    if name in OFFLINE_PACKAGES:
        spec = importlib.util.find_spec(OFFLINE_PACKAGES[name])
        if spec is None or spec.origin is None:
            raise ValueError(f"text_tower: {name!r} needs the package {OFFLINE_PACKAGES[name]!r}, not installed")
        folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise ValueError(f"text_tower: {name!r} is neither an offline package's model nor a model folder")
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def embed_captions(texts: list[str], model, tokenizer, batch_size: int = 64) -> torch.Tensor:
    """[N, H] frozen, mean-pooled embeddings of ``texts`` (float32, on the CPU)."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i : i + batch_size], padding=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state  # (b, L, H)
        out.append(mean_pool(hidden, batch["attention_mask"]).float())
    return torch.cat(out)


def _blocks(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    return transformer_encoder(dim, depth, heads, 4 * dim)


@dataclass(frozen=True)
class LaMPConfig:
    length: int = 32  # frames (= motion tokens) per motion
    dim: int = 128  # width of both transformers
    embed_dim: int = 64  # joint text-motion space (LaMP: 512)
    depth: int = 2  # motion tower blocks
    gen_depth: int = 3  # masked transformer blocks
    heads: int = 4
    causal: bool = True  # LaMP's autoregressive masked prediction (False: bidirectional, as MoMask)
    temperature: float = 0.07  # initial InfoNCE temperature (learned, as CLIP and LaMP: log(1 / 0.07))


class MaskTransformer(nn.Module):
    """``forward(ids [B, T], cond [B, E], drop [B] bool) -> logits [B, T, K]``: ``K`` codes, mask id ``K``.
    ``drop`` rows see a zero condition (LaMP's ``mask_cond``: classifier-free guidance's unconditional model)."""

    def __init__(self, codes: int, cond_dim: int, dim: int, depth: int, heads: int, length: int, causal: bool):
        super().__init__()
        self.mask_id, self.causal = codes, causal
        self.token_emb = nn.Embedding(codes + 1, dim)
        self.cond_emb = nn.Linear(cond_dim, dim)
        self.pos = nn.Parameter(torch.randn(length + 1, dim) * 0.02)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, codes))

    def forward(self, ids: torch.Tensor, cond: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        if drop is not None:
            cond = cond * (~drop)[:, None].to(cond.dtype)
        x = torch.cat([self.cond_emb(cond)[:, None], self.token_emb(ids)], dim=1)  # (B, 1 + T, D)
        x = x + self.pos[: x.shape[1]]
        n = x.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1) if self.causal else None  # True: blocked
        h = self.norm(self.blocks(x, mask=mask))
        return self.head(h[:, 1:])  # (B, T, K): the condition slot predicts nothing


class LaMP(nn.Module):
    """Quantizer, frozen caption table, text head, motion tower and masked transformer (the module docstring).
    ``captions`` [C, H] holds the frozen text tower's embedding of every distinct caption."""

    def __init__(self, codebook: torch.Tensor, captions: torch.Tensor, joints: int, config: LaMPConfig):
        super().__init__()
        c = config
        self.config = c
        self.quantizer = FrameQuantizer(codebook, joints)
        self.register_buffer("captions", captions.float().clone())  # (C, H): looked up, never trained
        K, H = self.quantizer.size, captions.shape[1]
        self.text_head = nn.Sequential(nn.Linear(H, c.dim), nn.GELU(), nn.Linear(c.dim, c.embed_dim))
        self.motion_emb = nn.Embedding(K, c.dim)
        self.motion_pos = nn.Parameter(torch.randn(c.length, c.dim) * 0.02)
        self.motion_blocks = _blocks(c.dim, c.depth, c.heads)
        self.motion_norm = nn.LayerNorm(c.dim)
        self.motion_proj = nn.Linear(c.dim, c.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / c.temperature)))
        self.generator = MaskTransformer(K, c.embed_dim, c.dim, c.gen_depth, c.heads, c.length, c.causal)

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor:
        """[B, E] unit-norm text features of caption indices [B]."""
        return F.normalize(self.text_head(self.captions[caption_ids]), dim=-1)

    def motion_features(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, E] unit-norm motion features of token ids [B, T]."""
        h = self.motion_emb(ids) + self.motion_pos[: ids.shape[1]]
        h = self.motion_norm(self.motion_blocks(h)).mean(1)  # (B, D) mean over frames
        return F.normalize(self.motion_proj(h), dim=-1)


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    """MaskGIT's mask ratio gamma(t) = cos(pi t / 2): 1 at t = 0, 0 at t = 1 (the reference ``cosine_schedule``)."""
    return torch.cos(t * math.pi / 2)


def _top_fraction(logits: torch.Tensor, keep: float) -> torch.Tensor:
    """Logits outside the top ``max(1, int(keep V))`` set to -inf (the reference ``top_k(logits, 1 - keep)``)."""
    k = max(1, int(keep * logits.shape[-1]))
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


SALT_SAMPLE = 0x4C614D50  # keyed.derive salt of generation's draws ("LaMP")


@torch.no_grad()
def maskgit_generate(logits_fn, batch: int, length: int, mask_id: int, steps: int, keys: torch.Tensor,
                     temperature: float = 1.0, keep: float = 0.1) -> torch.Tensor:  # fmt: skip
    """[B, T] ids from ``logits_fn(ids [B, T]) -> [B, T, K]`` by LaMP's iterative unmasking (the module docstring).
    Draws are Gumbel-max with keyed uniforms: row ``b`` depends only on ``keys[b]`` and its logits."""
    if steps < 1 or temperature < 0 or not 0 < keep <= 1 or keys.shape != (batch,):
        raise ValueError(f"need steps >= 1, temperature >= 0, keep in (0, 1] and keys [{batch}]")
    device = keys.device
    ids = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    score = torch.zeros(batch, length, dtype=torch.float64, device=device)  # committed tokens: +inf
    for k, t in enumerate(torch.linspace(0, 1, steps, dtype=torch.float64)):
        n_mask = (cosine_schedule(t) * length).round().clamp(min=1).long()
        rank = score.argsort(dim=1, stable=True).argsort(dim=1)  # 0: least confident
        masked = rank < n_mask
        ids = ids.masked_fill(masked, mask_id)
        logits = logits_fn(ids).float()  # (B, T, K)
        filtered = _top_fraction(logits, keep)
        if temperature > 0:
            u = keyed.uniform(keyed.derive(keys, SALT_SAMPLE, k), length * logits.shape[-1], dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp(min=1e-300))).view_as(logits).to(device)
            pred = (filtered.double() / temperature + gumbel).argmax(-1)
        else:
            pred = filtered.argmax(-1)
        ids = torch.where(masked, pred, ids)
        prob = logits.double().softmax(-1).gather(-1, pred[..., None]).squeeze(-1)  # confidence before filtering
        score = torch.where(masked, prob, torch.full_like(prob, float("inf")))
    return ids
