"""Du-IN's two pretraining stages as objectives (Zheng et al. 2024, "Du-IN: Discrete units-guided mask modeling for
decoding speech from Intracranial Neural signals", Sec. 3.2-3.3; reference ``train/duin/run_vqvae.py`` and
``run_mae.py``), and the word probe that reads what they learnt.

1. :class:`DuINVQVAE` trains the neural tokenizer (:class:`masklab.models.duin.SignalVQVAE`): reconstruction MSE
   of the signals plus the quantizer's commitment loss (the reference's ``rgs_loss_scale = vq_loss_scale = 1``).
2. :class:`DuINMaskedCodes` trains a fresh encoder to predict the frozen tokenizer's code of every token
   (:class:`masklab.models.duin.MaskedCodeModel`). As the reference's ``duin_mae``, each trial is seen twice, under
   a random mask of ``mask_ratio`` of its tokens (MAE's exact count, here keyed on the trial's key) and under its
   complement; each token's prediction comes from the pass in which it was masked, so the cross-entropy covers
   every token once.

:func:`word_probe` is the 10-way linear probe: a logistic regression on an encoder's frozen features of labelled
trials (:meth:`masklab.models.duin.SignalEncoder.features`), fit on one set of trials and scored on another.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt.patches import random_patches
from masklab.models.duin import MaskedCodeModel, SignalEncoder, SignalVQVAE
from masklab.objectives.base import Objective

__all__ = ["DuINVQVAE", "DuINMaskedCodes", "complementary_masks", "word_probe"]


def complementary_masks(keys: torch.Tensor, tokens: int, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, N] mask, its complement): MAE's random masking of ``tokens - int(tokens (1 - ratio))`` tokens per row,
    keyed on each row's key, and the other tokens (the reference's two passes of ``duin_mae``)."""
    mask = random_patches((1, tokens), ratio, keys=keys).mask
    return mask, ~mask


class DuINVQVAE(Objective):
    """Stage 1: ``forward(x [B, T, C], keys) -> (recon MSE + vq loss, metrics)``."""

    name = "duin-vqvae"
    eval_batch_size = 64

    def __init__(self, model: SignalVQVAE):
        super().__init__(model)

    def flop_groups(self):
        """(parameters, share of the tokens they process) for :mod:`masklab.compare.flops`: the channel fusion runs
        at every sample, ``seg_len`` times per (region) token; the rest once per token."""
        return _groups([self.model], self.model.encoder, 1.0)

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        loss, recon, vq, codes = self.model(batch)
        used = torch.bincount(codes.flatten(), minlength=self.model.quantizer.codebook_size) > 0
        return loss, {"recon": recon.detach(), "vq": vq.detach(), "codes_used": used.float().sum()}


class DuINMaskedCodes(Objective):
    """Stage 2: ``forward(x [B, T, C], keys) -> (cross-entropy of the tokenizer's codes, metrics)``; ``tokenizer``
    is frozen (eval mode, no gradient) and not saved: the recipe names it."""

    name = "duin-mae"
    eval_batch_size = 64

    def __init__(self, model: MaskedCodeModel, tokenizer: SignalVQVAE, mask_ratio: float = 0.5):
        super().__init__(model)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        codes, predicted = tokenizer.quantizer.codebook_size, model.head.out_features
        if codes != predicted:
            raise ValueError(f"the tokenizer has {codes} codes, the model predicts {predicted}")
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.mask_ratio = mask_ratio

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: its codebook never moves
        return self

    def flop_groups(self):
        """The encoder and head run twice (a mask and its complement); the frozen tokenizer's encoder and quantizer
        once, forward only (its decoder is not run)."""
        t = self.tokenizer
        return _groups([self.model], self.model.encoder, 2.0) + _groups([t.encoder, t.quantizer], t.encoder, 1.0)

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        with torch.no_grad():
            target = self.tokenizer.codes(batch)  # (B, N)
        mask, other = complementary_masks(keys, target.shape[1], self.mask_ratio)
        mask, other = mask.to(batch.device), other.to(batch.device)
        logits = torch.where(mask[..., None], self.model(batch, mask), self.model(batch, other))  # (B, N, K)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        acc = (logits.argmax(-1) == target).float().mean()
        return loss, {"code_acc": acc.detach(), "bits": loss.detach() / math.log(2)}


def _groups(modules: list[torch.nn.Module], encoder: SignalEncoder, passes: float):
    """(parameters, tokens processed per token) of ``modules`` run ``passes`` times: a region encoder's channel
    fusion runs at every sample, ``seg_len`` times per token."""
    from masklab.compare.flops import matmul_params

    params = [p for m in modules for p in matmul_params(m)]
    fuse = {id(p) for p in encoder.embed.fuse.parameters()} if encoder.embed.fuse is not None else set()
    rest = [p for p in params if id(p) not in fuse]
    fused = [p for p in params if id(p) in fuse]
    return [(fused, passes * encoder.embed.seg_len), (rest, passes)]


def word_probe(encoder: SignalEncoder, train: tuple, test: tuple, C: float = 1.0, pool: str = "mean") -> float:
    """Test accuracy of a logistic regression on the frozen features of ``train`` = (x [n, T, C], words [n]),
    scored on ``test`` (:func:`masklab.train.probe.linear_probe`); ``pool`` as in
    :meth:`~masklab.models.duin.SignalEncoder.features`."""
    from masklab.train.probe import linear_probe

    encoder = encoder.eval()
    (xtr, ytr), (xte, yte) = train, test
    ftr, fte = (torch.cat([encoder.features(x[i : i + 256], pool) for i in range(0, len(x), 256)]) for x in (xtr, xte))
    return linear_probe(ftr.numpy(), ytr.numpy(), fte.numpy(), yte.numpy(), C=C)
