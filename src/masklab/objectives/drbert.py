"""DrBERT: an enhanced masked-LM decoder used only in pretraining (Liang & Liang 2024, "DrBERT: Unveiling the
Potential of Masked Language Modeling Decoder in BERT pretraining", arXiv 2401.15861 v1; later versions call it
BPDec).

The encoder is the unchanged BERT-style model. Between its last hidden states and the MLM head (transform +
tied vocabulary projection) sits a decoder that the paper varies, after DeBERTa's Enhanced Mask Decoder (He et
al. 2021, Sec. 3.3, which feeds absolute positions to the decoding layers of a relative-position encoder):

  h   = encoder(x~)                                   (B, L, D) last hidden states of the corrupted input
  h'  = h + P[0..L)          if positions              learned absolute position table, P in R^{max_len x D}
  h'' = LN(Block_n(...Block_1(h')))  if layers        n pre-norm transformer blocks of the encoder's width
  logits = head(h'')                                   the model's own MLM head

The loss is BERT's: cross-entropy over the 15% selected positions, 80/10/10 mask/random/keep
(:class:`masklab.objectives.mlm.MLM`). The decoder is dropped after pretraining (the paper's point: fine-tuning
and serving cost nothing extra), so the checkpoint is the plain masked LM that every probe reads, and the decoder
is saved beside it in ``drbert_decoder.safetensors`` only to resume. The MLM head in the checkpoint was trained on
decoder outputs; probes read the encoder's hidden states, never that head.

The decoder is put in front of the head by a forward pre-hook that lives only during :meth:`DrBERT.forward`, so
``decoder="plain"`` is exactly the ``mlm`` objective and the saved model's own forward never sees it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from masklab.corrupt import IGNORE_INDEX
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import logits_of
from masklab.objectives.mlm import MLM

__all__ = ["DECODERS", "MLMDecoder", "DrBERT", "mlm_head"]

DECODERS = ("plain", "layers", "positions", "layers+positions")  # the decoder variants of the paper
DECODER_FILE = "drbert_decoder.safetensors"
HEAD_NAMES = ("head", "cls", "lm_head")  # ModernBERT, BERT, RoBERTa: the module that maps hidden states to logits


def mlm_head(model: nn.Module) -> nn.Module:
    """The module of an HF masked LM that takes the last hidden states and returns the logits."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(f"DrBERT needs a masked LM whose MLM head is one of {HEAD_NAMES}; {type(model).__name__} has none")


class MLMDecoder(nn.Module):
    """``forward(h [B, L, D]) -> [B, L, D]``: absolute positions added, then ``layers`` transformer blocks."""

    def __init__(self, hidden: int, heads: int, intermediate: int, *, layers: int, max_len: int):
        super().__init__()
        if layers < 0 or max_len < 0:
            raise ValueError(f"layers and max_len must be >= 0, got {layers} and {max_len}")
        self.positions = nn.Embedding(max_len, hidden) if max_len else None  # absolute positions (EMD's "I")
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)  # BERT's embedding initialisation
        blocks = [
            nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers)
        ]  # fmt: skip
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(hidden) if layers else None  # pre-norm blocks leave the residual stream unnormed

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.positions is not None:
            L = h.shape[1]
            if L > self.positions.num_embeddings:
                raise ValueError(f"sequence of {L} tokens is longer than the decoder's {self.positions.num_embeddings}")
            h = h + self.positions.weight[:L].to(h.dtype)  # (B, L, D): the same position row for every example
        for block in self.blocks:
            h = block(h)
        return self.norm(h) if self.norm is not None else h


class DrBERT(MLM):
    """BERT's MLM through a pretraining-only decoder: ``(model, info, decoder, decoder_layers, max_len, prob, mix)``.

    ``decoder`` is one of :data:`DECODERS`; ``decoder_layers`` blocks (of the model's width, heads and MLP size)
    when it has layers; ``max_len`` rows of absolute positions when it has positions."""

    name = "drbert"

    def __init__(
        self,
        model,
        info: TokenInfo,
        decoder: str = "layers+positions",
        decoder_layers: int = 2,
        max_len: int = 512,
        prob: float = 0.15,
        mix=(0.8, 0.1, 0.1),
    ):
        super().__init__(model, info, prob=prob, mix=mix)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        layers = "layers" in decoder
        if layers and decoder_layers < 1:
            raise ValueError(f"decoder_layers must be >= 1 for decoder={decoder!r}, got {decoder_layers}")
        if "positions" in decoder and max_len < 1:
            raise ValueError(f"max_len must be >= 1 for decoder={decoder!r}, got {max_len}")
        mlm_head(model)  # a model without a known MLM head is refused here, not at the first step
        c = model.config
        self.decoder_kind = decoder
        self.decoder = MLMDecoder(
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            layers=decoder_layers if layers else 0,
            max_len=max_len if "positions" in decoder else 0,
        )

    @contextmanager
    def _decoding(self):
        """The decoder in front of the MLM head for the duration of one forward."""
        head = mlm_head(self.model)
        handle = head.register_forward_pre_hook(lambda _, args: (self.decoder(args[0]), *args[1:]))
        try:
            yield
        finally:
            handle.remove()

    def forward(self, batch, keys, **_):
        c = TOKEN.get("random")(batch, keys, self.info, None, prob=self.prob, mix=self.mix)
        with self._decoding():
            logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        acc = hit.sum() / c.mask.sum().clamp(min=1)
        return loss, {"masked_acc": acc.detach(), "bits": loss.detach() / math.log(2)}

    def save_model(self, path: Path) -> None:
        """The plain masked LM (what fine-tuning and every probe read), and the decoder beside it for resuming."""
        super().save_model(path)
        state = {k: v.detach().contiguous() for k, v in self.decoder.state_dict().items()}
        save_file(state, Path(path) / DECODER_FILE, metadata={"decoder": self.decoder_kind})

    def load_model(self, path: Path) -> None:
        super().load_model(path)
        f = Path(path) / DECODER_FILE
        if not f.is_file():
            raise ValueError(
                f"checkpoint {path} has no DrBERT decoder ({DECODER_FILE}), so DrBERT cannot resume from it"
            )
        self.decoder.load_state_dict(load_file(f, device=str(self.device)))
