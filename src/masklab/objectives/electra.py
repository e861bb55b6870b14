"""ELECTRA replaced-token detection (Clark et al. 2020, Eq. 1-2) with DeBERTaV3 embedding sharing (He et al.
2023, Sec. 3: ES and gradient-disentangled embedding sharing, GDES).

A small generator (an MLM) fills k masked positions per row (drawn without replacement); its samples replace
the originals and a discriminator labels every token as original or replaced (a sample equal to the original
counts as original). Loss: L_MLM(generator) + lambda * L_RTD(discriminator), lambda = 50 (ELECTRA).

Embedding sharing between the two networks:
  none: separate token embeddings.
  es:   one embedding matrix E trained by both losses (ELECTRA; DeBERTaV3's "ES", the tug-of-war).
  gdes: the discriminator embeds with sg(E_G) + E_delta, E_delta initialised to zero (DeBERTaV3 Eq. 5): the
        RTD loss updates only E_delta, the MLM loss only E_G. The saved discriminator holds E_G + E_delta.
``self.model`` (the checkpoint) is the discriminator; the generator is saved beside it in ``generator/``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from masklab.corrupt.record import IGNORE_INDEX
from masklab.corrupt.replace import rtd_labels, sample_replacements
from masklab.corrupt.strategies import TOKEN
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["ELECTRA", "GDESEmbedding", "SHARING"]

SHARING = ("none", "es", "gdes")


class GDESEmbedding(nn.Module):
    """Token embedding sg(E_G) + E_delta: the generator's table, detached, plus a learned zero-initialised
    delta."""

    lookup_only = True  # E_delta is only looked up: no matmul FLOPs (masklab.compare.flops)

    def __init__(self, base: nn.Embedding):
        super().__init__()
        self.base = base  # shared module: its weight is also the generator's (and trained by it)
        self.delta = nn.Parameter(torch.zeros_like(base.weight))
        self.padding_idx = base.padding_idx

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight.detach() + self.delta

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, padding_idx=self.padding_idx)


def _tok_embeddings(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) holding the token embedding of an HF encoder."""
    emb = model.get_input_embeddings()
    for _, mod in model.named_modules():
        for attr, child in mod.named_children():
            if child is emb:
                return mod, attr
    raise ValueError(f"cannot find the token embedding of {type(model).__name__}")


class ELECTRA(Objective):
    name = "electra"

    def __init__(
        self,
        discriminator: nn.Module,
        generator: nn.Module,
        info: TokenInfo,
        *,
        sharing: str = "gdes",
        prob: float = 0.15,
        rtd_weight: float = 50.0,
        method: str = "multinomial",
        temperature: float = 1.0,
        disallow_correct: bool = False,
        max_predictions: int | None = None,
    ):
        if sharing not in SHARING:
            raise ValueError(f"embedding sharing must be one of {SHARING}, got {sharing!r}")
        super().__init__(discriminator)
        self.generator, self.info, self.sharing = generator, info, sharing
        self.prob, self.rtd_weight, self.method = prob, rtd_weight, method
        self.gen_weight = 1.0  # weight of the generator's MLM loss (tests set 0 to isolate the RTD gradient)
        self.temperature, self.disallow_correct, self.max_predictions = (
            temperature,
            disallow_correct,
            max_predictions,
        )
        g_parent, g_attr = _tok_embeddings(generator)
        d_parent, d_attr = _tok_embeddings(discriminator)
        g_emb = getattr(g_parent, g_attr)
        if sharing != "none" and g_emb.weight.shape != getattr(d_parent, d_attr).weight.shape:
            raise ValueError("embedding sharing needs equal generator and discriminator embedding shapes")
        if sharing == "es":
            setattr(d_parent, d_attr, g_emb)
        elif sharing == "gdes":
            setattr(d_parent, d_attr, GDESEmbedding(g_emb))
        self._d_slot = (d_parent, d_attr)

    def forward(self, batch, keys, **_):
        info = self.info
        c = TOKEN.get("electra")(batch, keys, info, None, prob=self.prob, max_predictions=self.max_predictions)
        g_logits = logits_of(self.generator(input_ids=c.inputs))  # (B, L, V)
        g_loss = F.cross_entropy(g_logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        disc_in = sample_replacements(
            g_logits,
            batch,
            c.mask,
            keys,
            method=self.method,
            temperature=self.temperature,
            disallow_correct=self.disallow_correct,
            banned=info.special_ids,
        )  # (B, L), no gradient through sampling
        labels = rtd_labels(disc_in, batch)  # (B, L) 1 = replaced
        d_logits = logits_of(self.model(input_ids=disc_in))[..., 0].float()  # (B, L)
        real = batch != info.pad_id
        d_loss = F.binary_cross_entropy_with_logits(d_logits[real], labels[real])
        loss = self.gen_weight * g_loss + self.rtd_weight * d_loss
        hit = (g_logits.argmax(-1) == c.targets) & c.mask
        metrics = {
            "gen_loss": g_loss.detach(),
            "disc_loss": d_loss.detach(),
            "gen_acc": (hit.sum() / c.mask.sum().clamp(min=1)).detach(),
            "disc_acc": ((d_logits[real] > 0).float() == labels[real]).float().mean().detach(),
            "replaced_frac": labels[real].mean().detach(),
            "gen_bits": g_loss.detach() / math.log(2),
        }
        return loss, metrics

    # ------------------------------------------------------------------------------------- checkpoints
    def save_model(self, path: Path) -> None:
        """Discriminator as a plain HF model (GDES: E_G + E_delta materialised), generator in
        ``generator/``."""
        path = Path(path)
        parent, attr = self._d_slot
        current = getattr(parent, attr)
        if isinstance(current, GDESEmbedding):
            plain = nn.Embedding.from_pretrained(
                current.weight.detach().clone(), freeze=False, padding_idx=current.padding_idx
            )
            setattr(parent, attr, plain)
            try:
                self.model.save_pretrained(path, safe_serialization=True)
            finally:
                setattr(parent, attr, current)
            save_file({"delta": current.delta.detach().contiguous().cpu()}, path / "gdes_delta.safetensors")
        else:
            self.model.save_pretrained(path, safe_serialization=True)
        self.generator.save_pretrained(path / "generator", safe_serialization=True)

    def load_model(self, path: Path) -> None:
        path = Path(path)
        dev = str(self.device)
        _load(
            self.generator,
            load_file(path / "generator" / "model.safetensors", device=dev),
            path / "generator",
        )
        state = load_file(path / "model.safetensors", device=dev)
        parent, attr = self._d_slot
        current = getattr(parent, attr)
        if isinstance(current, GDESEmbedding):
            key = next(k for k in state if k.endswith(f"{attr}.weight"))
            state.pop(key)
            current.delta.data.copy_(load_file(path / "gdes_delta.safetensors", device=dev)["delta"])
            state = {k: v for k, v in state.items()}
            skip = {
                key.replace(f"{attr}.weight", f"{attr}.base.weight"),
                key.replace(f"{attr}.weight", f"{attr}.delta"),
            }
        else:
            skip = set()
        _load(self.model, state, path, skip)


def _load(model: nn.Module, state: dict, where: Path, skip: set = frozenset()) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied and k not in skip and not k.endswith("decoder.weight")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {where} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
