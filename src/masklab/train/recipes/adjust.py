"""ADJUST sampler heads on a frozen masked-diffusion model (:mod:`masklab.objectives.adjust`). Launch:

    masklab train --recipe adjust --out runs/adjust base=runs/mdm-g k=4      # any MDM checkpoint or run folder
    masklab train --recipe adjust-hmm --out runs/adjust-hmm k=8              # the exact HMM denoiser as the base
    masklab train --recipe adjust-hmm --out runs/adjust-hmm-c states=trajectory remasking=low_confidence

Only the head trains and is saved; the run's ``masklab.json`` records the base (``base``) and the fingerprint of
its weights (``base_fingerprint``), which :func:`masklab.sample.adjust.load_head` checks at sampling time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from masklab.data.synthetic import RandomHMM
from masklab.objectives.adjust import AdjustHead, AdjustObjective, feature_dim, fingerprint, trajectories
from masklab.train.recipes.base import Recipe, Task, TextRecipe, register, seeded


@dataclass
class HeadShape:
    """The head's fields, shared by both recipes."""

    k: int = 4  # tokens per full forward the head is trained for: it sees up to k - 1 revealed tokens
    dim: int = 128  # width of the single layer: a fraction of a full forward's cost on the demo model
    heads: int = 4  # attention heads of the layer
    ff: int = 512  # feed-forward width (4 x dim)
    remasking: str = "random"  # reveal order it is trained in and samples in by default (confidence's scores)
    states: str = "data"  # trajectory (the base's own decodings in order ``remasking``, as the paper) or data
    trajectories: int = 256  # training windows (at most) decoded by the base: one full forward per generated token
    valid_trajectories: int = 32  # held-out windows decoded the same way for the eval
    prompt: int = 0  # tokens of each window kept as the trajectory's prompt

    def check_head(self, length: int) -> None:
        from masklab.sample.samplers.confidence import REMASKING

        if self.remasking not in REMASKING:
            raise ValueError(f"remasking must be one of {REMASKING}, got {self.remasking!r}")
        if self.k < 2:
            raise ValueError(f"k (tokens per full forward) must be >= 2 to train a head, got {self.k}")
        if self.dim <= 0 or self.heads <= 0 or self.dim % self.heads or self.ff <= 0:
            raise ValueError(f"need dim, heads, ff > 0 and dim divisible by heads, got {self.dim}, {self.heads}")
        if self.states not in ("trajectory", "data"):
            raise ValueError(f"states must be trajectory or data, got {self.states!r}")
        if self.states == "trajectory" and not (0 <= self.prompt < length - 1):
            raise ValueError(f"prompt must be in [0, {length - 1}) (positions - 1), got {self.prompt}")
        if self.states == "trajectory" and (self.trajectories < 1 or self.valid_trajectories < 1):
            raise ValueError("trajectories and valid_trajectories must be >= 1")

    def decoded(self, model, windows, n: int, mask_id: int, stream: int, batch: int = 32):
        """[n, 2, L] trajectories of the frozen ``model`` on ``n`` evenly spaced windows (all of them if fewer),
        their first ``prompt`` tokens kept, in the order ``remasking`` (:func:`trajectories`)."""
        n = min(n, windows.shape[0])
        x = windows[torch.linspace(0, windows.shape[0] - 1, n).long()].clone()  # spread over the whole data
        x[:, self.prompt :] = mask_id
        return trajectories(model, x, mask_id=mask_id, remasking=self.remasking, batch=batch,
                            seed=(self.seed * 1000003 + stream) * 100003)  # fmt: skip

    def make_head(self, in_dim: int, vocab: int, max_len: int, seed: int) -> AdjustHead:
        with seeded(seed):
            return AdjustHead(in_dim, vocab, max_len, self.dim, self.heads, self.ff)


def _head_facts(base_name: str, base, in_dim: int, vocab: int, max_len: int) -> dict:
    """What :func:`masklab.sample.adjust.load_head` needs from the manifest beside the recipe."""
    return {"base": base_name, "base_fingerprint": fingerprint(base), "in_dim": in_dim, "vocab": vocab,
            "max_len": max_len}  # fmt: skip


@dataclass
class AdjustRecipe(TextRecipe, HeadShape):
    """A head on a frozen MDM checkpoint. ``states=trajectory`` (the paper's): the base's own one-token-per-forward
    decodings of the windows of ``data`` (first ``prompt`` tokens kept, in the base's tokenizer), in the order
    ``remasking``; ``states=data``: the windows themselves, with a random subset of their masked tokens revealed."""

    base: str = "random"  # an MDM checkpoint, run folder or HF masked-LM folder; random: a frozen untrained one
    steps: int = 400
    lr: float = 1e-3
    warmup: int = 20
    remasking: str = "low_confidence"  # the paper's top-confidence unmasking (the order Dream and LLaDA decode in)
    states: str = "trajectory"  # trajectory (the base's own decodings, as the paper) or data
    prompt: int = 32  # tokens of each window kept as the trajectory's prompt

    def __post_init__(self):
        super().__post_init__()
        self.check_head(self.seq_len)
        if self.init is not None:
            raise ValueError("adjust trains a head on a frozen base: name the base with base=PATH, not init")
        if self.arch != "modernbert":
            raise ValueError("ADJUST needs a bidirectional masked-diffusion base: arch=modernbert")

    def _base(self):
        """(frozen model, tokenizer or the tokenizer spec): the checkpoint's, or a fresh ``arch``/``preset`` model
        drawn from ``seed + 1`` for ``base=random``."""
        if self.base != "random":
            from masklab.train.checkpoint import load_masked_lm

            return load_masked_lm(self.base)
        return None, self.tokenizer

    def build(self) -> Task:
        from masklab.data.text import text_task_data
        from masklab.models import build_model, check_seq_len

        model, tok = self._base()
        data = text_task_data(self.data, tok, self.seq_len)
        if model is None:
            with seeded(self.seed + 1):
                model = build_model(self.arch, self.preset, data.info, self.seq_len)
        check_seq_len(self.seq_len, model.config.max_position_embeddings)
        vocab, in_dim = int(model.config.vocab_size), feature_dim(model, int(model.config.vocab_size))
        head = self.make_head(in_dim, vocab, self.seq_len, self.seed)
        objective = AdjustObjective(head, model, mask_id=data.info.mask_id, k=self.k)
        facts = {**data.facts, **_head_facts(self.base, model, in_dim, vocab, self.seq_len)}
        fp = f"{data.fingerprint}-base{facts['base_fingerprint']}"
        train, valid = data.train, data.valid
        if self.states == "trajectory":
            mask_id = data.info.mask_id
            train = self.decoded(model, train, self.trajectories, mask_id, 1)
            valid = self.decoded(model, valid, self.valid_trajectories, mask_id, 2)
            facts["example_tokens"] = self.seq_len  # an example packs ids with their reveal steps: [2, L]
            fp += f"-traj{self.remasking}-n{self.trajectories}-p{self.prompt}-s{self.seed}"
        return Task(objective, train, valid, fp, data.tokenizer, facts)


@dataclass
class AdjustHMMRecipe(Recipe, HeadShape):
    """A head on the exact HMM denoiser (:class:`masklab.data.synthetic.RandomHMM`). ``states=data``: sequences
    drawn from the HMM, a random subset of their masked tokens revealed (samples from the base model itself, the
    same distribution as its own decodings in a random order); ``states=trajectory``: the HMM denoiser's own
    one-token-per-forward decodings in the order ``remasking`` (the paper's; needed for top-confidence order, in
    which the model's decodings are not samples of its joint), from the text recipe's code path."""

    fixed_data: ClassVar[str] = "hmm"  # the one data this recipe reads
    data: str = "hmm"  # the only data this recipe reads: sequences drawn from the HMM
    hmm_states: int = 16  # with alpha 0.1: marginal decoding at k = 8 costs ~5 nats per 16 tokens
    hmm_symbols: int = 16
    hmm_seed: int = 0  # fixes the HMM
    hmm_alpha: float = 0.1  # Dirichlet concentration of its rows: < 1 makes neighbours strongly dependent
    length: int = 16  # positions per sequence
    train_sequences: int = 8192
    k: int = 8
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    eval_every: int = 500
    ckpt_every: int = 500
    trajectories: int = 8192  # with states=trajectory: sequences decoded by the HMM (train_sequences' default)
    valid_trajectories: int = 512

    def __post_init__(self):
        super().__post_init__()
        self.check_head(self.length)
        if self.length < 2 or self.train_sequences < 1:
            raise ValueError("length must be >= 2 and train_sequences >= 1")
        if not self.hmm_alpha > 0:  # a Dirichlet needs a positive concentration (0 gave an all-NaN table)
            raise ValueError(f"hmm_alpha must be > 0, got {self.hmm_alpha}")

    @property
    def hmm(self) -> RandomHMM:
        return RandomHMM(self.hmm_states, self.hmm_symbols, seed=self.hmm_seed, alpha=self.hmm_alpha)

    @property
    def base_name(self) -> str:
        return f"hmm:S{self.hmm_states}-V{self.hmm_symbols}-seed{self.hmm_seed}-a{self.hmm_alpha:g}"

    def build(self) -> Task:
        hmm, V = self.hmm, self.hmm_symbols
        train = hmm.sample(self.train_sequences, self.length, seed=1)
        valid = hmm.sample(512, self.length, seed=2)
        in_dim = feature_dim(hmm, V)
        head = self.make_head(in_dim, V, self.length, self.seed)
        objective = AdjustObjective(head, hmm, mask_id=hmm.mask_id, k=self.k)
        facts = {**_head_facts(self.base_name, hmm, in_dim, V, self.length), "example_tokens": self.length}
        fp = f"{self.base_name}-L{self.length}-n{self.train_sequences}"
        if self.states == "trajectory":  # the HMM's own decodings of the sequences' first ``prompt`` tokens
            train = self.decoded(hmm, train, self.trajectories, hmm.mask_id, 1, batch=512)
            valid = self.decoded(hmm, valid, self.valid_trajectories, hmm.mask_id, 2, batch=512)
            fp += f"-traj{self.remasking}-n{self.trajectories}-p{self.prompt}-s{self.seed}"
        return Task(objective, train, valid, fp, info=facts)


@register("adjust", "ADJUST: a one-layer sampler head trained by KL on a frozen MDM (base=PATH), k tokens per forward")
def adjust():
    return AdjustRecipe()


@register("adjust-hmm", "ADJUST on the exact HMM denoiser: the head's KL target is the exact conditional")
def adjust_hmm():
    return AdjustHMMRecipe()
