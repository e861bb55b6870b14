"""OSM on the canvas world: a mask classifier that writes the class name as words (generative mask
classification), against a closed-set classifier head on the same mask-aware features.

OSM (Yu et al., "Towards Open-Ended Visual Recognition with Large Language Model", 2023; reference
github.com/bytedance/OmniScient-Model ``models/omniscient_model.py``) classifies a mask proposal by asking an LLM
"What is in the segmentation mask?" with visual tokens made by a **MaskQFormer**: learned queries cross-attend to
the image features with the mask as the attention mask (each query sees only the features inside the proposal),
and the LLM is trained with the next-token loss on the class name. No list of class names is supplied during
training or testing: the answer is whatever words come out, and it is right when it is the class name.

Here, at canvas size:

* the image features are a small convolutional backbone's 16 x 16 map (width 64), trained with the task instead of
  a frozen EVA-CLIP;
* :class:`MaskQFormer`: ``queries`` learned tokens, one pre-norm cross-attention block over the features inside the
  mask resized to 16 x 16 (the masked attention of Mask2Former / OSM), then an MLP; a mask with no cell inside at
  16 x 16 attends to every cell;
* the generative head (:class:`WordDecoder`) is a tiny causal transformer over characters, with the visual tokens
  as its prefix, standing in for the LLM and its tokenizer: class names span several tokens, as they do in an
  LLM's vocabulary (digits are written as English words, ``7`` -> ``seven``: :data:`LABEL_WORDS`);
* the closed-set head reads the mean of the same visual tokens with a linear layer over the 14 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.data.canvases import CATEGORIES
from masklab.seg.nets import cell_features

__all__ = ["LABEL_WORDS", "VOCAB", "PAD", "BOS", "EOS", "MAX_LEN", "spell", "read", "word_targets", "MaskQFormer",
           "CausalBlock", "WordDecoder", "OSMClassifier", "HEADS"]  # fmt: skip

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LABEL_WORDS = tuple(_DIGITS[int(c)] if c.isdigit() else c for c in CATEGORIES)  # the answer for each class
PAD, BOS, EOS = 0, 1, 2
VOCAB = ("<pad>", "<bos>", "<eos>", *"abcdefghijklmnopqrstuvwxyz")  # one token per letter
MAX_LEN = max(len(w) for w in LABEL_WORDS) + 1  # the longest word ("rectangle") and its <eos>
HEADS = ("generate", "closed")


def spell(word: str) -> list[int]:
    """Token ids of ``word`` then ``<eos>``; a character outside a-z is a ValueError."""
    if not word or any(ch not in VOCAB[3:] for ch in word):
        raise ValueError(f"word must be a non-empty string of letters a-z, got {word!r}")
    return [VOCAB.index(ch) for ch in word] + [EOS]


def read(ids) -> str:
    """The word that token ids spell, up to the first ``<eos>`` (``<pad>`` and ``<bos>`` are skipped)."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i > EOS:
            out.append(VOCAB[i])
    return "".join(out)


_TARGETS = torch.tensor([spell(w) + [PAD] * (MAX_LEN - len(w) - 1) for w in LABEL_WORDS])  # (classes, MAX_LEN)


def word_targets(labels: torch.Tensor) -> torch.Tensor:
    """(..., MAX_LEN) long: the spelled answer (+ ``<eos>``, pad after) of each class id; -1 (an empty slot) gives
    an all-``<pad>`` row."""
    table = torch.cat([_TARGETS, torch.full((1, MAX_LEN), PAD)]).to(labels.device)  # last row: no object
    return table[torch.where(labels < 0, len(LABEL_WORDS), labels)]


class MaskQFormer(nn.Module):
    """(features [B, C, h, w], masks [B, Q, H, W]) -> visual tokens [B, Q, K, D]: ``K`` learned queries attend
    to the feature cells inside each mask (resized to h x w; a mask with no cell inside sees all cells), then a
    pre-norm MLP (OSM's MaskQFormer with its mask attention, one layer)."""

    def __init__(self, channels: int, dim: int = 64, queries: int = 4, heads: int = 2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.kv = nn.Linear(channels, 2 * dim)
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_q, self.norm_kv, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(channels), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        B, Q = masks.shape[:2]
        C, h, w = features.shape[1:]
        K, D = self.queries.shape
        m = F.interpolate(masks.float().flatten(0, 1)[:, None], size=(h, w), mode="area")[:, 0]  # (B Q, h, w)
        keep = (m > 0).flatten(1)  # a cell any part of which is in the mask
        keep = keep | ~keep.any(1, keepdim=True)  # (B Q, h w): an empty mask sees everything
        cells = self.norm_kv(features.flatten(2).transpose(1, 2))  # (B, h w, C)
        k, v = self.kv(cells).repeat_interleave(Q, 0).view(B * Q, h * w, 2, self.heads, -1).unbind(2)
        x = self.queries.expand(B * Q, K, D)
        q = self.q(self.norm_q(x)).view(B * Q, K, self.heads, -1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=keep[:, None, None, :])  # fmt: skip
        x = x + self.proj(a.transpose(1, 2).reshape(B * Q, K, D))
        x = x + self.mlp(self.norm2(x))
        return x.view(B, Q, K, D)


class CausalBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention (each position sees itself and the ones before)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, H, L, D / H)
        x = x + self.proj(a.transpose(1, 2).reshape(N, L, D))
        return x + self.mlp(self.norm2(x))


class WordDecoder(nn.Module):
    """A causal transformer over ``[visual tokens] <bos> letters``: the logits [N, T, V] of each next letter given
    the visual prefix [N, K, D] and the letters so far [N, T] (teacher forcing); :meth:`generate` writes a word
    greedily. The prefix is causal too, as the visual tokens in an LLM's prompt are."""

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 2, prefix: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.embed = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Parameter(torch.randn(prefix + MAX_LEN, dim) * 0.02)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(VOCAB))

    def forward(self, prefix: torch.Tensor, letters: torch.Tensor) -> torch.Tensor:
        K, T = prefix.shape[1], letters.shape[1]
        x = torch.cat([prefix, self.embed(letters)], 1) + self.pos[: K + T]  # (N, K + T, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, K:]))  # (N, T, V): the letter after each input token

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, max_len: int = MAX_LEN) -> torch.Tensor:
        """(N, max_len) greedy letters after ``<bos>``; positions after ``<eos>`` are ``<pad>``."""
        N = prefix.shape[0]
        seq = torch.full((N, 1), BOS, dtype=torch.long, device=prefix.device)
        done = torch.zeros(N, dtype=torch.bool, device=prefix.device)
        for _ in range(max_len):
            nxt = self(prefix, seq)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            done |= nxt == EOS
            seq = torch.cat([seq, nxt[:, None]], 1)
        return seq[:, 1:]


class OSMClassifier(nn.Module):
    """Image -> 16 x 16 features -> MaskQFormer visual tokens per mask -> the class name written letter by letter
    (``head="generate"``, OSM) or class logits of a linear layer on the tokens' mean (``head="closed"``)."""

    def __init__(self, head: str = "generate", width: int = 64, queries: int = 4, layers: int = 2):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head = head
        self.backbone = cell_features(width)  # (B, width, 16, 16)
        self.qformer = MaskQFormer(width, width, queries)
        if head == "generate":
            self.decoder = WordDecoder(width, layers, prefix=queries)
        else:
            self.classifier = nn.Linear(width, len(CATEGORIES))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixels - 0.5)  # (B, C, 16, 16)

    def tokens(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.qformer(features, masks)  # (B, Q, K, D)

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss over the objects, per-object correctness under teacher forcing) for labels (B, Q), -1 = no
        object: the next-letter cross-entropy of the spelled name (+ ``<eos>``) or the class cross-entropy."""
        valid = labels >= 0
        t = tokens[valid]  # (N, K, D)
        if self.head == "closed":
            logits = self.classifier(t.mean(1))
            return F.cross_entropy(logits, labels[valid]), logits.argmax(-1) == labels[valid]
        target = word_targets(labels[valid])  # (N, MAX_LEN)
        inputs = torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], 1)
        logits = self.decoder(t, inputs)
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)
        return ce, ((logits.argmax(-1) == target) | (target == PAD)).all(1)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor) -> list[str]:
        """The answer for each mask's tokens [N, K, D]: the generated word, or the closed-set class's word."""
        if self.head == "closed":
            return [LABEL_WORDS[int(c)] for c in self.classifier(tokens.mean(1)).argmax(-1)]
        return [read(row) for row in self.decoder.generate(tokens)]
