"""The tiny multimodal LM every canvas segmentation model shares: Hugging Face's InternVL (a ViT, InternVL's pixel
shuffle and MLP projector, and a Llama decoder), the backbone family of Text4Seg (InternVL2-8B), MLLMSeg
(InternVL2.5) and the Qwen2-VL-style 2x2 token merge of STAMP.

At 64 x 64 pixels and 4 x 4 patches the ViT sees a 16 x 16 grid; the pixel shuffle (``downsample_ratio`` 0.5)
merges 2 x 2 patches into one of 8 x 8 = 64 image tokens for the decoder. A sequence is

    [<image> x 64] [prompt, left-padded to its slot] [answer ...]

so every answer starts at the same column and the token before it is the last prompt token. Padding inside the
prompt slot is hidden from attention; the position ids are the column indices (padding included), so every answer
token, and every STAMP mask token, sits at the same RoPE distance from every image token in every example.

:func:`greedy_decode` generates with a KV cache (one forward per token after the prefill: the number of function
evaluations, NFE, that R-RLE shortens); :func:`reference_decode` recomputes the whole sequence at each step and is
the test oracle for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    DynamicCache,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    LlamaConfig,
)

__all__ = ["VLMSize", "vlm_config", "image_tokens", "prefix", "Decoded", "greedy_decode", "reference_decode"]

IMAGE_MEAN = IMAGE_STD = 0.5  # pixels in [0, 1] -> [-1, 1]


@dataclass(frozen=True)
class VLMSize:
    """Widths and depths of the tiny InternVL (the recipes' fields)."""

    image_size: int = 64
    patch_size: int = 4  # 16 x 16 ViT patches; 8 x 8 decoder tokens after the 2 x 2 pixel shuffle
    vision_dim: int = 64
    vision_layers: int = 2
    text_dim: int = 128
    text_layers: int = 2
    heads: int = 4  # decoder heads (the ViT has vision_dim // 32)
    max_positions: int = 1024

    def __post_init__(self):
        if self.image_size % (2 * self.patch_size):
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2 x patch_size {self.patch_size}")
        if self.text_dim % self.heads or self.vision_dim % 32:
            raise ValueError("text_dim must divide by heads and vision_dim by 32")

    @property
    def vit_grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        return (self.vit_grid // 2) ** 2


def vlm_config(size: VLMSize, tokenizer, config_class=InternVLConfig, **extra) -> InternVLConfig:
    """InternVL config (ViT + pixel shuffle + MLP projector + Llama) for ``tokenizer``'s vocabulary."""
    vision = InternVLVisionConfig(
        hidden_size=size.vision_dim,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_dim // 32,
        intermediate_size=2 * size.vision_dim,
        image_size=size.image_size,
        patch_size=size.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_dim,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        intermediate_size=2 * size.text_dim,
        max_position_embeddings=size.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return config_class(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=size.tokens,
        downsample_ratio=0.5,
        **extra,
    )


def build(config: InternVLConfig, seed: int, model_class=InternVLForConditionalGeneration):
    """A freshly initialised model, its weights drawn from ``seed`` (the global RNG is restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class._from_config(config, attn_implementation="sdpa")


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - IMAGE_MEAN) / IMAGE_STD


def image_tokens(model, batch_size: int) -> torch.Tensor:
    """(B, N) ids of the image placeholders the model fills with projected ViT features."""
    n = model.config.image_seq_length
    return torch.full((batch_size, n), model.config.image_token_id, dtype=torch.long, device=model.device)


def prefix(model, prompt: torch.Tensor, *more: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, position ids) of ``[<image> x N] [prompt] [more ...]``: ``<pad>`` = 0 anywhere after
    the image is hidden from attention; positions are the column indices."""
    ids = torch.cat([image_tokens(model, len(prompt)), prompt, *more], 1)
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return ids, (ids != 0).long(), pos


@dataclass
class Decoded:
    """Greedy answers: ``ids`` (B, T) up to and including each row's <eos> (0 after it), ``lengths`` (B,) tokens
    generated per row (<eos> included, T when it never came), ``nfe`` forward passes of the batch."""

    ids: torch.Tensor
    lengths: torch.Tensor
    nfe: int


@torch.no_grad()
def greedy_decode(model, pixels: torch.Tensor, prompt: torch.Tensor, eos_id: int, max_new: int) -> Decoded:
    """Greedy answers to ``prompt`` (B, P) about ``pixels`` (B, 3, S, S) with a KV cache: one prefill, then one
    forward per new token, until every row has produced <eos> or ``max_new`` tokens."""
    ids, keep, pos = prefix(model, prompt)
    cache = DynamicCache(config=model.config.get_text_config())
    out = model(input_ids=ids, pixel_values=normalize(pixels), attention_mask=keep, position_ids=pos, cache=cache,
                logits_to_keep=1)  # fmt: skip
    nfe, tokens = 1, []
    done = torch.zeros(len(prompt), dtype=torch.bool, device=prompt.device)
    for _ in range(max_new):
        nxt = out.logits[:, -1].argmax(-1).masked_fill(done, 0)  # (B,): rows past their <eos> emit padding
        tokens.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()) or len(tokens) == max_new:
            break
        keep = torch.cat([keep, torch.ones_like(keep[:, :1])], 1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=keep, position_ids=pos, cache=cache)
        nfe += 1
    return _finish(torch.stack(tokens, 1), eos_id, nfe)


@torch.no_grad()
def reference_decode(model, pixels: torch.Tensor, prompt: torch.Tensor, eos_id: int, max_new: int) -> Decoded:
    """:func:`greedy_decode` without a cache: the whole sequence is recomputed for every token (the oracle)."""
    answer = prompt[:, :0]
    for _ in range(max_new):
        ids, keep, pos = prefix(model, prompt, answer)
        logits = model(input_ids=ids, pixel_values=normalize(pixels), attention_mask=keep, position_ids=pos).logits
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where((answer == eos_id).any(1), torch.zeros_like(nxt), nxt)
        answer = torch.cat([answer, nxt[:, None]], 1)
        if bool((answer == eos_id).any(1).all()):
            break
    return _finish(answer, eos_id, answer.shape[1])


def _finish(tokens: torch.Tensor, eos_id: int, nfe: int) -> Decoded:
    at_eos = tokens == eos_id
    lengths = torch.where(at_eos.any(1), at_eos.float().argmax(1) + 1, torch.full_like(tokens[:, 0], tokens.shape[1]))
    return Decoded(tokens, lengths.long(), nfe)
