"""MDiff4STR (Masked Diffusion for Scene Text Recognition) and the autoregressive reader it is compared with.

:class:`MDiff4STR` trains a bidirectional decoder over an image's features (OpenOCR ``MDiffDecoder.forward_train``,
``openrec/modeling/decoders/mdiff_decoder.py``) with two losses on two inputs of the same label row, both from
:func:`masklab.corrupt.diffusion.mdiff4str_noise`:

- denoising: the input masked by one of the six noising strategies; cross-entropy on the masked positions, each
  divided by the row's masked share p_mask and by (length + 1), summed and divided by the batch size;
- reflect: the input with random ids in place of some tokens (token-replacement noise); cross-entropy on every
  label position (a plain mean), so the model learns to revise wrong but confident tokens.

``loss = rec_weight * denoising + reflect_weight * reflect`` (the reference's ``rec_loss_weight`` and
``reflect_loss_weight``, both 1). With ``strategies=("random",)`` and ``reflect_weight=0`` it is the vanilla
masked diffusion model the paper starts from. Held-out evaluation also reads each image with one of the six
decoders (:mod:`masklab.sample.str_decoders`) and reports word accuracy.

:class:`ARReader` is the autoregressive baseline: the same network with causal self-attention, trained with
teacher forcing (the label row shifted right behind a start id) and read greedily.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.corrupt.diffusion import STRATEGIES, mdiff4str_noise
from masklab.corrupt.record import IGNORE_INDEX
from masklab.data.digit_strings import CLASSES, EOS, MASK, PAD, VOCAB, DigitStrings
from masklab.models.scene_text import cross_kv_params, decode, encode, load_weights
from masklab.objectives.base import Objective
from masklab.sample.str_decoders import STR_DECODER, Decoded, strings

__all__ = ["MDiff4STR", "ARReader", "word_accuracy"]


def word_accuracy(decoded: Decoded, labels: torch.Tensor) -> torch.Tensor:
    """Share of rows whose text (the argmax up to the first EOS) equals the label's text exactly."""
    right = [a == b for a, b in zip(strings(decoded.ids, EOS), strings(labels, EOS), strict=True)]
    return torch.tensor(sum(right) / max(len(right), 1))


class _Reader(Objective):
    """What both readers share: the packed rows of a :class:`DigitStrings` world, and the step's FLOP groups."""

    passes = 1  # decoder passes over the label positions per training example

    def __init__(self, model, world: DigitStrings, decoder: str = "low_confidence", steps: int = 3):
        super().__init__(model)
        STR_DECODER[decoder]  # an unknown decoder is one ValueError naming the choices
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.world, self.decoder, self.steps = world, decoder, steps

    def flop_groups(self):
        """The encoder sees P + 1 image tokens once; the decoder sees the L label positions on each pass, and its
        cross-attention keys and values the P + 1 image tokens on each pass (fractions of L tokens)."""
        from masklab.compare.flops import matmul_params

        L = self.world.length
        P = self.model.encoder.embeddings.patch_embeddings.num_patches + 1
        kv = cross_kv_params(self.model)
        rest = [p for p in matmul_params(self.model.decoder) if all(p is not q for q in kv)]
        return [(matmul_params(self.model.encoder), P / L), (rest, self.passes), (kv, self.passes * P / L)]

    def load_model(self, path) -> None:
        load_weights(self.model, path)

    def _metrics(self, pixels, labels, keys, metrics: dict) -> dict:
        if not self.training:  # held-out evaluation reads the images as the decoder will
            metrics["word_acc"] = word_accuracy(self.recognize(pixels, keys=keys), labels)
        return metrics


class MDiff4STR(_Reader):
    name = "mdiff4str"

    def __init__(
        self,
        model,
        world: DigitStrings,
        strategies: tuple[str, ...] = STRATEGIES,
        reflect_weight: float = 1.0,
        rec_weight: float = 1.0,
        decoder: str = "low_confidence",
        steps: int = 3,
    ):
        super().__init__(model, world, decoder, steps)
        if reflect_weight < 0 or rec_weight <= 0:
            raise ValueError(f"reflect_weight must be >= 0 and rec_weight > 0, got {reflect_weight}, {rec_weight}")
        self.strategies, self.reflect_weight, self.rec_weight = tuple(strategies), reflect_weight, rec_weight
        self.passes = 2 if reflect_weight else 1

    def logits(self, ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """[B, L, C] logits over the output classes (EOS and the characters: no <mask>, no <pad>)."""
        return decode(self.model, ids, memory)[..., :CLASSES]

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        pixels, labels = self.world.unpack(batch)
        B = labels.shape[0]
        memory = encode(self.model, pixels)  # (B, P + 1, D), shared by both inputs as in the reference
        c = mdiff4str_noise(labels, keys, mask_id=MASK, vocab_size=VOCAB, special_ids=(PAD,), pad_id=PAD,
                            strategies=self.strategies)  # fmt: skip
        ce = F.cross_entropy(self.logits(c.inputs, memory).flatten(0, 1), c.targets.flatten(), reduction="none")
        denoise = (ce * c.weights.flatten()).sum() / B  # OpenOCR: sum(CE / p_mask / (length + 1)) / B
        loss = self.rec_weight * denoise
        metrics = {"denoise": denoise.detach()}
        if self.reflect_weight:
            r = self.logits(c.reflect.inputs, memory)
            reflect = F.cross_entropy(r.flatten(0, 1), c.reflect.targets.flatten(), ignore_index=IGNORE_INDEX)
            loss = loss + self.reflect_weight * reflect
            metrics["reflect"] = reflect.detach()
        return loss, self._metrics(pixels, labels, keys, metrics)

    @torch.no_grad()
    def recognize(self, pixels: torch.Tensor, decoder: str | None = None, steps: int | None = None, keys=None):
        """:class:`~masklab.sample.str_decoders.Decoded` of ``pixels`` [B, 1, H, W] by a registered decoder."""
        memory = encode(self.model, pixels)
        run = STR_DECODER.get(decoder or self.decoder)
        shape = (pixels.shape[0], self.world.length)
        return run(lambda ids: self.logits(ids, memory), shape, mask_id=MASK, eos_id=EOS, steps=steps or self.steps,
                   keys=keys, device=pixels.device)  # fmt: skip


class ARReader(_Reader):
    """Causal decoder, teacher forcing: position i reads [start, y_0 .. y_{i-1}] and predicts y_i (the start id is
    <mask>, which the autoregressive reader never otherwise sees)."""

    name = "ar-reader"

    def logits(self, ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return decode(self.model, ids, memory, causal=True)[..., :CLASSES]

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        pixels, labels = self.world.unpack(batch)
        start = torch.full_like(labels[:, :1], MASK)
        inputs = torch.cat([start, labels[:, :-1]], dim=1)
        targets = torch.where(labels == PAD, IGNORE_INDEX, labels)
        logits = self.logits(inputs, encode(self.model, pixels))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return loss, self._metrics(pixels, labels, keys, {"ce": loss.detach()})

    @torch.no_grad()
    def recognize(self, pixels: torch.Tensor, decoder: str | None = None, steps: int | None = None, keys=None):
        """Greedy left-to-right reading, one pass per position, until every row has an EOS."""
        memory = encode(self.model, pixels)
        ids = torch.full((pixels.shape[0], 1), MASK, device=pixels.device)
        probs = []
        for _ in range(self.world.length):
            p = self.logits(ids, memory)[:, -1].float().softmax(-1)  # (B, C)
            probs.append(p)
            ids = torch.cat([ids, p.argmax(-1, keepdim=True)], dim=1)
            if bool((ids[:, 1:] == EOS).any(1).all()):
                break
        out = torch.stack(probs, 1)
        pad = F.one_hot(torch.full_like(ids[:, :1], EOS), CLASSES).float()  # positions never read: EOS
        out = torch.cat([out, pad.expand(-1, self.world.length - out.shape[1], -1)], dim=1)
        return Decoded(out, len(probs))
