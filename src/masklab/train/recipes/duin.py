"""Du-IN on synthetic word trials (:mod:`masklab.data.signals`): the neural tokenizer, then masked code
prediction (:mod:`masklab.objectives.duin`). Launch::

    masklab train --recipe duin-vqvae --out runs/duin-vq                        # stage 1: the VQ tokenizer
    masklab train --recipe duin-mae --out runs/duin tokenizer=runs/duin-vq      # stage 2: masked code prediction

``tokens=channel`` builds both stages on per-channel tokens (the univariate baseline). :func:`word_probe_of`
scores a checkpoint of either stage with the 10-way linear probe; ``benchmarks/duin_signals.py`` compares
region tokens, channel tokens and no pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from masklab.data.signals import WordSignals
from masklab.models.duin import TOKENS, MaskedCodeModel, NormEMAQuantizer, SignalEmbed, SignalEncoder, SignalVQVAE
from masklab.objectives.duin import DuINMaskedCodes, DuINVQVAE, word_probe
from masklab.train.recipes.base import Recipe, Task, register, seeded

__all__ = ["DuINVQVAERecipe", "DuINMaskedRecipe", "word_probe_of", "SHAPE"]

# The fields a masked-code run must share with its tokenizer: the data and the token layout.
SHAPE = ("words", "channels", "regions", "length", "noise", "drift", "signals_seed", "tokens", "seg_len")
PROBE_SEEDS = (3, 4)  # the probe's trials: fit on one draw, scored on another; pretraining reads seeds 1 and 2


@dataclass
class _SignalsRecipe(Recipe):
    modality: ClassVar[str] = "signals"

    fixed_data: ClassVar[str] = "word-signals"  # the one data this recipe reads
    data: str = "word-signals"  # the only data these recipes read: WordSignals trials, generated from signals_seed
    words: int = 10
    channels: int = 16
    regions: int = 4  # 4 channels each: a word is a sign pattern over its region's channels
    length: int = 128  # samples per trial
    noise: float = 0.1  # white noise per channel against responses of peak 1: the words are half the variance
    drift: float = 0.05  # the AR(1) background's std
    signals_seed: int = 0  # fixes the templates, channel subsets and gains
    train_trials: int = 4000  # unlabelled pretraining trials (labels unused)
    tokens: str = "region"  # region (Du-IN: channels fused, one token per segment) | channel (one per channel)
    seg_len: int = 16  # samples per token: 8 segments of a 128-sample trial
    d_neural: int = 16  # width of the fused channel signal (the reference's SubjectBlock d_output)
    dim: int = 64
    depth: int = 2
    heads: int = 4
    codebook: int = 64  # codes of the tokenizer (>= 2)
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 40
    weight_decay: float = 0.05  # the reference's AdamW decay
    eval_every: int = 100
    ckpt_every: int = 200

    def __post_init__(self):
        super().__post_init__()
        if self.tokens not in TOKENS:
            raise ValueError(f"tokens must be one of {TOKENS}, got {self.tokens!r}")
        if self.seg_len < 1 or self.length % self.seg_len:
            raise ValueError(f"seg_len must divide length={self.length}, got {self.seg_len}")
        if self.codebook < 2:
            raise ValueError(f"codebook must be >= 2 (one code carries no information), got {self.codebook}")
        if self.dim % self.heads or self.dim % 2:
            raise ValueError(f"dim must be even and divisible by heads, got {self.dim} and {self.heads}")
        if self.train_trials < 1:
            raise ValueError(f"train_trials must be >= 1, got {self.train_trials}")
        _ = self.signals  # the world's own checks (regions of a power-of-2 size, the burst fits, ...)

    @property
    def signals(self) -> WordSignals:
        return WordSignals(self.words, self.channels, self.regions, self.length, noise=self.noise, drift=self.drift,
                           seed=self.signals_seed)  # fmt: skip

    def encoder(self) -> SignalEncoder:
        embed = SignalEmbed(self.tokens, self.channels, self.length, self.seg_len, self.dim, self.d_neural)
        return SignalEncoder(embed, self.dim, self.depth, self.heads)

    def task(self, objective) -> Task:
        s = self.signals
        train, _ = s.sample(self.train_trials, seed=1, standardize=True)
        valid, _ = s.sample(256, seed=2, standardize=True)
        n = objective.model.encoder.embed.num_tokens
        fp = f"word-signals-{'-'.join(str(getattr(self, k)) for k in SHAPE[:-2])}-n{self.train_trials}"
        return Task(objective, train, valid, fp, info={"example_tokens": n, "tokens": self.tokens})


@dataclass
class DuINVQVAERecipe(_SignalsRecipe):
    code_dim: int = 16  # the quantizer's unit vectors
    beta: float = 1.0  # commitment weight (the reference's)
    decay: float = 0.99  # codebook EMA decay (the reference's)
    decoder_depth: int = 1  # blocks of the tokenizer's decoder
    restart: float = 1.0  # revive codes whose usage EMA falls below this count (the repository's Jukebox rule)

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.decay < 1.0 or self.beta < 0 or self.code_dim < 1 or self.decoder_depth < 0:
            raise ValueError("need decay in [0, 1), beta >= 0, code_dim >= 1 and decoder_depth >= 0")
        if self.restart < 0:
            raise ValueError(f"restart must be >= 0, got {self.restart}")

    def vqvae(self) -> SignalVQVAE:
        q = NormEMAQuantizer(self.dim, self.codebook, self.code_dim, beta=self.beta, decay=self.decay,
                             restart=self.restart)  # fmt: skip
        return SignalVQVAE(self.encoder(), q, self.dim, self.decoder_depth, self.heads)

    def build(self) -> Task:
        with seeded(self.seed):
            model = self.vqvae()
        return self.task(DuINVQVAE(model))


@dataclass
class DuINMaskedRecipe(_SignalsRecipe):
    tokenizer: str = "random"  # a duin-vqvae checkpoint (run folder or model/), or random: a frozen untrained one
    mask_ratio: float = 0.5  # the reference's: half the tokens, then the other half

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")

    def _tokenizer(self) -> SignalVQVAE:
        if self.tokenizer == "random":
            with seeded(self.seed + 1):
                return DuINVQVAERecipe(**{k: getattr(self, k) for k in (*SHAPE, "d_neural", "dim", "depth", "heads",
                                                                        "codebook")}).vqvae()  # fmt: skip
        from masklab.train import checkpoint
        from masklab.train.recipes.base import from_dict

        loaded = checkpoint.load(self.tokenizer, model=False)  # verified against its manifest
        saved = from_dict(loaded.manifest["recipe"])
        if not isinstance(saved, DuINVQVAERecipe):
            raise ValueError(f"tokenizer {self.tokenizer} is not a duin-vqvae checkpoint")
        differ = [k for k in (*SHAPE, "codebook") if getattr(saved, k) != getattr(self, k)]
        if differ:
            raise ValueError(f"tokenizer {self.tokenizer} was trained with other {', '.join(differ)} than this run")
        objective = DuINVQVAE(saved.vqvae())
        objective.load_model(loaded.folder)
        return objective.model

    def build(self) -> Task:
        tokenizer = self._tokenizer()
        with seeded(self.seed):
            model = MaskedCodeModel(self.encoder(), self.dim, self.codebook)
        return self.task(DuINMaskedCodes(model, tokenizer, self.mask_ratio))


def word_probe_of(folder, recipe: _SignalsRecipe, trials: int = 1000, pool: str = "mean") -> float:
    """10-way linear-probe accuracy of the encoder in the checkpoint ``folder`` of ``recipe`` (either stage): fit
    on ``trials`` labelled trials, scored on as many others; ``pool`` as in
    :meth:`~masklab.models.duin.SignalEncoder.features`."""
    from masklab.train import checkpoint

    objective = recipe.build().objective
    objective.load_model(checkpoint.load(Path(folder), model=False).folder)
    s = recipe.signals
    sets = [s.sample(trials, seed, standardize=True) for seed in PROBE_SEEDS]
    return word_probe(objective.model.encoder, *sets, pool=pool)


@register("duin-vqvae", "Du-IN stage 1: VQ-VAE tokenizer of region-fused channels (tokens=channel: per channel)")
def duin_vqvae():
    return DuINVQVAERecipe()


@register("duin-mae", "Du-IN stage 2: masked prediction of the frozen tokenizer's codes (tokenizer=PATH)")
def duin_mae():
    return DuINMaskedRecipe()
