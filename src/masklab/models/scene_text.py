"""A tiny scene-text recognizer built from Hugging Face classes: a ViT encoder (``ViTModel``) reads the image, a
BERT decoder with cross-attention (``BertLMHeadModel``) reads the label positions and the image features, and
``VisionEncoderDecoderModel`` holds the two (``save_pretrained`` / ``from_pretrained`` folders).

MDiff4STR's decoder is bidirectional: OpenOCR's ``MDiffDecoder`` runs every ``TransformerBlock`` with
``self_mask=None`` (``openrec/modeling/decoders/mdiff_decoder.py``). A BERT decoder is causal by default;
:func:`decode` passes a full 4D attention mask (every position sees every position), which transformers' mask
builder takes as given, so the same network is bidirectional there and causal with ``causal=True`` (the
autoregressive baseline). The reference's decoder is post-norm with ReLU MLPs, as BERT is (GELU here).
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertLMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel

__all__ = ["scene_text_model", "encode", "decode", "cross_kv_params", "load_weights"]


def scene_text_model(
    image_shape: tuple[int, int],
    length: int,
    vocab: int,
    *,
    pad_id: int,
    patch: tuple[int, int] = (8, 4),
    dim: int = 64,
    encoder_layers: int = 2,
    decoder_layers: int = 2,
    heads: int = 4,
) -> VisionEncoderDecoderModel:
    """A ViT encoder over ``image_shape`` (one channel) in ``patch`` patches and a BERT decoder over ``length``
    positions of a ``vocab``-id alphabet, both ``dim`` wide, no dropout (tiny models, short runs)."""
    H, W = image_shape
    if H % patch[0] or W % patch[1]:
        raise ValueError(f"image {H}x{W} is not divisible into {patch[0]}x{patch[1]} patches")
    if dim % heads:
        raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
    common = dict(hidden_size=dim, num_attention_heads=heads, intermediate_size=4 * dim, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)  # fmt: skip
    vit = ViTConfig(image_size=(H, W), patch_size=patch, num_channels=1, num_hidden_layers=encoder_layers, **common)
    bert = BertConfig(vocab_size=vocab, num_hidden_layers=decoder_layers, max_position_embeddings=length,
                      is_decoder=True, add_cross_attention=True, type_vocab_size=1, pad_token_id=pad_id,
                      **common)  # fmt: skip
    return VisionEncoderDecoderModel(encoder=ViTModel(vit, add_pooling_layer=False), decoder=BertLMHeadModel(bert))


def encode(model: VisionEncoderDecoderModel, pixels: torch.Tensor) -> torch.Tensor:
    """[B, P + 1, D] image features (the patches and ViT's CLS token) of ``pixels`` [B, 1, H, W]."""
    return model.encoder(pixel_values=pixels).last_hidden_state


def decode(model: VisionEncoderDecoderModel, ids: torch.Tensor, memory: torch.Tensor, causal: bool = False):
    """Logits [B, L, vocab] of the decoder over ``ids`` [B, L] reading ``memory`` (from :func:`encode`):
    bidirectional self-attention, or causal with ``causal=True``."""
    full = None if causal else torch.ones(ids.shape[0], 1, ids.shape[1], ids.shape[1], dtype=torch.bool,
                                          device=ids.device)  # fmt: skip
    return model.decoder(input_ids=ids, attention_mask=full, encoder_hidden_states=memory, use_cache=False).logits


def cross_kv_params(model: VisionEncoderDecoderModel) -> list[torch.nn.Parameter]:
    """The cross-attention key and value projections: they run over the image features, not the label positions
    (what :func:`masklab.compare.flops.flops_per_step` needs to count a step)."""
    out = []
    for layer in model.decoder.bert.encoder.layer:
        out += [*layer.crossattention.self.key.parameters(), *layer.crossattention.self.value.parameters()]
    return out


def load_weights(model: VisionEncoderDecoderModel, path) -> None:
    """Read a ``save_pretrained`` folder into ``model`` through ``from_pretrained``, which maps the saved key names
    (transformers writes ViT's original names) to the module's. Its ViT comes with a pooler this model has not:
    that is the only key left out; any other mismatch is one ValueError."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the pooler "newly initialized" warning is expected
    try:
        loaded = VisionEncoderDecoderModel.from_pretrained(path, local_files_only=True)
    finally:
        logging.set_verbosity(verbosity)
    state = {k: v for k, v in loaded.state_dict().items() if not k.startswith("encoder.pooler.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match the model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")  # fmt: skip
