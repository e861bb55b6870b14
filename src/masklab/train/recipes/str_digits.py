"""Scene-text recognition on strings of scikit-learn digits (:mod:`masklab.data.digit_strings`): MDiff4STR, the
vanilla masked diffusion model it starts from, and an autoregressive reader, one network for all three (a ViT
encoder and a BERT decoder with cross-attention, :mod:`masklab.models.scene_text`). Launch:
``masklab train --recipe mdiff4str-digits --out runs/mdiff4str decoder=low_confidence decode_steps=3``.

``benchmarks/mdiff4str_digits.py`` trains the three for several seeds and reads the held-out strings with every
decoder at 3 steps (word accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from masklab.corrupt.diffusion import STRATEGIES
from masklab.data.digit_strings import PAD, VOCAB, DigitStrings
from masklab.models.scene_text import scene_text_model
from masklab.objectives.mdiff4str import ARReader, MDiff4STR
from masklab.sample.str_decoders import STR_DECODER
from masklab.train.recipes.base import Recipe, Task, register, seeded

METHODS = ("mdiff4str", "ar")


@dataclass
class StrDigitsRecipe(Recipe):
    modality: ClassVar[str] = "str"  # no `masklab compare` probe reads these runs: the evaluation is word accuracy

    fixed_data: ClassVar[str] = "digit-strings"  # the one data this recipe reads
    data: str = "digit-strings"  # the only data: digit strings drawn at run time from sklearn's bundled digits
    method: str = "mdiff4str"  # mdiff4str (bidirectional decoder, masks) or ar (causal decoder, teacher forcing)
    strategies: str = "all"  # MDiff4STR noising strategies, comma-separated, or all six; random alone is vanilla MDM
    reflect_weight: float = 1.0  # the token-replacement (reflect) loss; 0 drops its second decoder pass
    max_len: int = 6  # digits in the longest word: 7 label positions with the EOS
    min_len: int = 3
    lexicon: int = 500  # words the strings are drawn from (0: uniform strings): neighbours say something
    jitter: int = 8  # the word starts 0 .. jitter pixels from the image's left edge
    world_seed: int = 0  # fixes the lexicon; train and held-out strings come from their own seeds
    train_strings: int = 8000  # written with the first 1347 digits' handwriting
    valid_strings: int = 512  # written with the other 450 digits' handwriting (never trained on)
    patch_width: int = 4  # ViT patches of 8 x 4 pixels: two per glyph, 14 per image
    dim: int = 64
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    decoder: str = "low_confidence"  # how held-out images are read (masklab list str-decoder)
    decode_steps: int = 3  # MDiff4STR's headline setting: three denoising steps
    steps: int = 2000  # the autoregressive reader reads half the words after 1000 steps, MDiff4STR a fifth
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    eval_every: int = 500
    eval_batches: int = 16  # all 512 held-out strings
    ckpt_every: int = 500

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        bad = [s for s in self.strategy_tuple if s not in STRATEGIES]
        if bad or not self.strategy_tuple:
            raise ValueError(f"strategies must be 'all' or a comma-separated subset of {STRATEGIES}, got {bad}")
        STR_DECODER[self.decoder]  # an unknown decoder is one ValueError naming the choices
        if self.reflect_weight < 0 or self.decode_steps < 1:
            raise ValueError(f"reflect_weight must be >= 0 and decode_steps >= 1: {self.reflect_weight}, "
                             f"{self.decode_steps}")  # fmt: skip
        if self.train_strings < 1 or self.valid_strings < 1:
            raise ValueError("train_strings and valid_strings must be positive")
        if self.patch_width < 1 or (8 * self.max_len + self.jitter) % self.patch_width:
            raise ValueError(f"patch_width must divide the image width {8 * self.max_len + self.jitter}")
        self.world  # validates the lengths and the lexicon  # noqa: B018

    @property
    def strategy_tuple(self) -> tuple[str, ...]:
        return STRATEGIES if self.strategies == "all" else tuple(s for s in self.strategies.split(",") if s)

    @property
    def world(self) -> DigitStrings:
        return DigitStrings(self.max_len, self.min_len, self.lexicon, self.world_seed, self.jitter)

    def build(self) -> Task:
        world = self.world
        train = world.pack(*world.sample(self.train_strings, "train", seed=1))
        valid = world.pack(*world.sample(self.valid_strings, "test", seed=2))
        with seeded(self.seed):
            model = scene_text_model(world.image_shape, world.length, VOCAB, pad_id=PAD, patch=(8, self.patch_width),
                                     dim=self.dim, encoder_layers=self.encoder_layers,
                                     decoder_layers=self.decoder_layers, heads=self.heads)  # fmt: skip
        if self.method == "ar":
            objective = ARReader(model, world, self.decoder, self.decode_steps)
        else:
            objective = MDiff4STR(model, world, self.strategy_tuple, self.reflect_weight, decoder=self.decoder,
                                  steps=self.decode_steps)  # fmt: skip
        fp = f"digit-strings-{world.min_len}to{world.max_len}-lex{world.lexicon}-j{world.jitter}-seed{world.seed}"
        fp += f"-n{self.train_strings}-v{self.valid_strings}"
        return Task(objective, train, valid, fp, info={"example_tokens": world.length})  # a label position


@register("mdiff4str-digits", "MDiff4STR on digit strings: six noising strategies + reflect loss, ViT + BERT")
def mdiff4str_digits():
    return StrDigitsRecipe()


@register("mdm-str-digits", "vanilla masked diffusion on digit strings (random masking only, no reflect loss)")
def mdm_str_digits():
    return StrDigitsRecipe(strategies="random", reflect_weight=0.0)


@register("ar-str-digits", "autoregressive reader on digit strings (causal BERT decoder, teacher forcing)")
def ar_str_digits():
    return StrDigitsRecipe(method="ar")
