"""Recipes: small typed dataclasses that say what to train and how. One file per recipe family.

To add a recipe, create a module in ``masklab/train/recipes/`` that subclasses :class:`Recipe` (or
:class:`TextRecipe` for token corpora, :class:`WorldRecipe` for a world drawn at run time), implements
``build_objective`` (and ``build`` if the data is not text), builds its model inside :func:`seeded`, and registers
named presets with :func:`register`. Modules in this package are imported automatically, so
``masklab recipes`` lists the new names and the tests that loop over the registry pick them up.

``key=value`` overrides from the command line are parsed against the dataclass field types by
:func:`apply_overrides`; combinations are validated once in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from masklab.corrupt import keyed
from masklab.models import ARCHS, PRESETS, build_model, check_seq_len
from masklab.models.pretrained import ADAPTS, load_pretrained
from masklab.registry import Registry

__all__ = [
    "Recipe",
    "TextRecipe",
    "WorldRecipe",
    "seeded",
    "Task",
    "register",
    "RECIPES",
    "get_recipe",
    "apply_overrides",
    "to_dict",
    "from_dict",
    "resolve_recipe",
    "RESUMABLE_CHANGES",
    "SMALL_BPE",
]

# Fields a resumed run may change; anything else (model size or preset, tokenizer, seq_len, data, ...) must match
# the checkpoint's recipe.
RESUMABLE_CHANGES = {
    "steps",
    "max_minutes",
    "eval_every",
    "ckpt_every",
    "log_every",
    "log",
    "eval_batches",
    "device",
    "parallel",  # ddp and fsdp write the same checkpoint
}
PARALLEL = ("ddp", "fsdp")  # how a run on several ranks holds the model: replicated or sharded

# The recipe registry: each entry's callable takes no argument and returns the configured Recipe.
RECIPES = Registry("recipe", "training recipes: () -> Recipe")

# The schedule every full-size text recipe shares: small preset, BPE-4096, 20k steps (a GPU or a long CPU run).
SMALL_BPE = dict(
    preset="small",
    tokenizer="bpe:4096",
    seq_len=256,
    batch_size=64,
    steps=20000,
    lr=1e-3,
    warmup=500,
    eval_every=1000,
    ckpt_every=1000,
)
_CLASSES: dict[str, type] = {}  # recipe classes by name, for reloading a saved recipe


def register(name: str, summary: str):
    """Decorator for a zero-argument factory that returns a configured recipe."""

    return RECIPES.register(name, summary)


def get_recipe(name: str) -> Recipe:
    from masklab.train import recipes  # noqa: F401  (imports every recipe module)

    recipe = RECIPES.get(name)()
    recipe.name = name
    return recipe


@dataclass
class Task:
    """What a recipe builds for the loop: the objective (owning its models) and the examples."""

    objective: torch.nn.Module
    train: torch.Tensor  # [N, ...] training examples
    valid: torch.Tensor  # [M, ...] held-out examples
    fingerprint: str  # names the exact data
    tokenizer: object | None = None  # saved with each checkpoint when present
    info: dict = field(default_factory=dict)  # facts recorded in masklab.json (e.g. unigram entropy)


@dataclass
class Recipe:
    """Fields shared by every recipe. Each default carries the reason for its value."""

    modality: ClassVar[str] = "none"  # what the examples are (text, image): the probes of `masklab compare` that fit
    fixed_data: ClassVar[str | None] = None  # a recipe that generates its own data reads only this ``data`` value

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _CLASSES[cls.__name__] = cls

    name: str = "custom"  # set from the registry key
    arch: str = "modernbert"  # modernbert (bidirectional) or llama (causal)
    preset: str = "tiny"  # model size: micro (tests), mini, tiny (demo), small, base
    data: str = "stdlib-code"  # stdlib view, .txt/.jsonl path or folder, or a datasets name
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # global batch in examples, split over ranks and grad_accum micro-steps
    grad_accum: int = 1  # micro-steps per optimizer step on each rank
    lr: float = 3e-3  # peak AdamW learning rate: small models on small data tolerate a high rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 30  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decay on matrices only (not norms, biases)
    beta2: float = 0.98  # shorter second-moment memory: short runs
    clip: float = 1.0  # global gradient-norm clip
    eval_every: int = 100  # steps between held-out evaluations (0: only at the end)
    eval_batches: int = 8  # held-out batches per evaluation
    ckpt_every: int = 100  # steps between atomic checkpoints (0: only at the end)
    log_every: int = 10  # steps between metrics.jsonl records
    log: str = "jsonl"  # jsonl (metrics.jsonl only) or tensorboard (also RUN/tensorboard event files)
    seed: int = 0  # keys data order and every mask: (seed, epoch, example index)
    max_minutes: float = 0.0  # wall-clock budget for training; 0 means none. Stops cleanly and checkpoints.
    device: str = "auto"  # auto: cuda when available (one per rank), else cpu
    parallel: str = "ddp"  # ddp (replicate) or fsdp (FSDP2 fully_shard: params, grads, optimizer state sharded)

    def __post_init__(self):
        if self.fixed_data is not None and self.data != self.fixed_data:
            raise ValueError(f"{self.name} reads only data={self.fixed_data}, got {self.data!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for k in ("steps", "batch_size", "grad_accum"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        for k in ("warmup", "eval_every", "ckpt_every", "log_every", "eval_batches"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be positive and min_lr_ratio in [0, 1]")
        if self.log not in ("jsonl", "tensorboard"):
            raise ValueError(f"log must be 'jsonl' or 'tensorboard', got {self.log!r}")
        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel must be one of {PARALLEL}, got {self.parallel!r}")

    def build(self) -> Task:
        raise ValueError(f"recipe {self.name!r} does not define its data")

    def check_positive(self, *names: str) -> None:
        """One ValueError naming the first of ``names`` that is below 1."""
        for k in names:
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")


@contextmanager
def seeded(seed: int):
    """Run a model's construction with torch's global RNG (which initialises weights) seeded by ``seed``, and
    restore the caller's RNG state afterwards: a recipe's model depends on its seed only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass
class WorldRecipe(Recipe):
    """A recipe on a world it draws at run time (the canvases, the dense scenes of :mod:`masklab.data.canvases`):
    training examples come from world ``world``, held-out ones from world ``valid_world``, so the held-out
    examples are never trained on and every recipe and seed is scored on the same ones. Small models trained
    from scratch: a high rate, a final evaluation only (most evaluations generate or roll out)."""

    modality: ClassVar[str] = "seg"  # no `masklab compare` probe reads these runs; each reports its own metrics
    fixed_data: ClassVar[str] = "canvases"  # the one data these recipes read

    data: str = "canvases"  # the only data: the world, drawn at run time
    world: int = 0  # seed of the training world
    valid_world: int = 1  # seed of the held-out world
    image_size: int = 64  # canvas side
    steps: int = 400
    lr: float = 2e-3
    weight_decay: float = 0.05
    eval_every: int = 0  # only at the end
    ckpt_every: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.valid_world == self.world:
            raise ValueError("world and valid_world must differ: held-out examples must not be trained on")

    def task(self, objective, train, valid, fingerprint: str, tokenizer=None, rows: int = 4) -> Task:
        """The :class:`Task` of these rows, the objective measured (``example_tokens``, the FLOP count's positions)
        on the first ``rows`` training rows with their training keys."""
        n = min(self.batch_size, rows)
        tokens = objective.measure(train[:n], keyed.train_keys(self.seed, 0, torch.arange(n)))
        return Task(objective, train, valid, fingerprint, tokenizer, {"example_tokens": tokens})


@dataclass
class TextRecipe(Recipe):
    """A recipe over a token corpus: corpus -> tokenizer -> fixed-length windows -> objective(model).

    ``init`` starts from a pretrained Hugging Face model (:func:`masklab.models.pretrained.load_pretrained`): its
    tokenizer then replaces ``tokenizer``, and its architecture replaces ``arch`` and ``preset``."""

    modality: ClassVar[str] = "text"
    head: ClassVar[str] = "masked"  # the head the objective needs: masked (MLM, MDM, ELECTRA) or causal (AR, MEAP)
    needs_mask: ClassVar[bool] = True  # the objective puts mask tokens in the input (all but AR)

    tokenizer: str = "bytes"  # bytes (vocab 261), bpe:N trained on the corpus, or a path to an HF tokenizer
    seq_len: int = 128  # tokens per training window
    init: str | None = None  # a Hugging Face model folder (or a hub id in the local cache) to start from
    adapt: str = "none"  # none | causal: turn a causal LM (init) into a masked-diffusion LM (DiffuGPT, Dream)
    anneal_steps: int = 0  # adapt=causal: attention goes from causal to bidirectional over these steps (DiffuGPT)
    lora: int = 0  # LoRA rank through peft (0: train every weight); the base weights are then frozen
    lora_alpha: float = 16.0  # LoRA scale alpha (the update is alpha / rank * B A)
    lora_targets: str = "all-linear"  # comma-separated module name suffixes (q_proj,v_proj), or all-linear

    def __post_init__(self):
        super().__post_init__()
        check_seq_len(self.seq_len)  # against the model's max_position_embeddings, before any allocation
        if self.adapt not in ADAPTS:
            raise ValueError(f"adapt must be one of {ADAPTS}, got {self.adapt!r}")
        if self.lora < 0 or self.lora_alpha <= 0:
            raise ValueError(f"lora must be >= 0 and lora_alpha > 0, got {self.lora} and {self.lora_alpha}")
        if self.adapt != "none" and (self.init is None or self.head != "masked"):
            raise ValueError(
                "adapt=causal turns a causal LM given as init=PATH into a masked LM, for masked objectives"
            )
        if self.anneal_steps < 0 or (self.anneal_steps and self.adapt != "causal"):
            raise ValueError(f"anneal_steps (>= 0) anneals a causal LM adapted with adapt=causal, got "
                             f"anneal_steps={self.anneal_steps}, adapt={self.adapt!r}")  # fmt: skip

    def build_objective(self, model, info) -> torch.nn.Module:
        raise ValueError(f"recipe {self.name!r} does not define an objective")

    def build(self) -> Task:
        from masklab.data.text import text_task_data

        pre = self.pretrained()
        data = text_task_data(self.data, pre.tokenizer if pre else self.tokenizer, self.seq_len)
        limit = getattr(data.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < self.seq_len:
            raise ValueError(f"seq_len={self.seq_len} exceeds the tokenizer's model_max_length {limit}")
        model = self.make_model(pre, data.info, data.facts)
        return Task(
            self.build_objective(model, data.info), data.train, data.valid, data.fingerprint, data.tokenizer, data.facts
        )

    def pretrained(self):
        """The ``init`` model and tokenizer (:class:`~masklab.models.pretrained.Pretrained`), or None."""
        if not self.init:
            return None
        with seeded(self.seed):
            return load_pretrained(
                self.init, head=self.head, adapt=self.adapt, mask_token=self.needs_mask, anneal_steps=self.anneal_steps
            )

    def make_model(self, pre, info, facts: dict) -> torch.nn.Module:
        """``pre``'s model (recorded in ``facts``), else a fresh ``arch`` / ``preset`` model for ``info``."""
        if pre:
            check_seq_len(self.seq_len, pre.max_positions)
            facts.update(init=str(self.init), init_notes=pre.notes)
            model = pre.model
        else:
            with seeded(self.seed):
                model = build_model(self.arch, self.preset, info, self.seq_len)
        return self.with_lora(model, facts)

    def with_lora(self, model: torch.nn.Module, facts: dict, train_modules: tuple[str, ...] = ()) -> torch.nn.Module:
        """``model`` with ``lora=R`` adapters through peft (recorded in ``facts``), or ``model`` itself;
        ``train_modules`` (a fresh head) train in full beside the adapters."""
        if not self.lora:
            return model
        from masklab.models.lora import add_lora

        with seeded(self.seed + 2):  # LoRA's A matrices initialise from the global RNG
            model = add_lora(model, self.lora, self.lora_alpha, self.lora_targets, train_modules=train_modules)
        facts.update(lora_rank=self.lora, lora_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
        return model


def _parse(value: str, typ, key: str):
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        typ = args[0]
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return value
    except ValueError:
        pass
    else:
        raise ValueError(f"override {key}: unsupported type {typ}")
    raise ValueError(f"override {key}={value!r}: expected {getattr(typ, '__name__', typ)}")


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    """New recipe with ``key=value`` overrides, type-checked against the dataclass fields."""
    hints = typing.get_type_hints(type(recipe))
    fields = {f.name for f in dataclasses.fields(recipe) if f.name != "name"}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value")
        if key not in fields:
            raise ValueError(f"unknown key {key!r} for recipe {recipe.name!r}; known keys: {', '.join(sorted(fields))}")
        changes[key] = _parse(value, hints[key], key)
    return dataclasses.replace(recipe, **changes)


def to_dict(recipe: Recipe) -> dict:
    return {"recipe_class": type(recipe).__name__, **dataclasses.asdict(recipe)}


def from_dict(d: dict) -> Recipe:
    """The recipe saved in a checkpoint's masklab.json, each field checked with the same typed parser as
    ``key=value`` overrides (a wrongly typed field is one ValueError naming it)."""
    from masklab.train import recipes  # noqa: F401

    if not isinstance(d, dict) or "recipe_class" not in d:
        raise ValueError("the saved recipe must be a mapping with a 'recipe_class' field")
    d = dict(d)
    cls_name = d.pop("recipe_class")
    if cls_name not in _CLASSES:
        raise ValueError(f"checkpoint names recipe class {cls_name!r}, which this masklab does not have")
    cls = _CLASSES[cls_name]
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for k, v in d.items():
        if k not in names:
            continue
        values[k] = _parse_saved(v, hints[k], k)
    return cls(**values)


def _parse_saved(value, typ, key: str):
    """A JSON value of the saved recipe through the override parser (JSON gives real ints, floats and bools)."""
    if value is None:
        return _parse("none", typ, key)
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float) and _base_type(typ) is int:
        if not value.is_integer():
            raise ValueError(f"saved recipe {key}={value!r}: expected int")
        value = str(int(value))
    elif isinstance(value, (int, float, str)):
        value = str(value)
    else:
        raise ValueError(f"saved recipe {key}={value!r}: expected {getattr(_base_type(typ), '__name__', typ)}")
    try:
        return _parse(value, typ, key)
    except ValueError as e:
        raise ValueError(f"saved recipe: {e}".replace("override ", "")) from None


def _base_type(typ):
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(typ) if a is not type(None))
    return typ


def resolve_recipe(name: str | None, overrides: list[str], saved: dict | None) -> Recipe:
    """The recipe a run trains with.

    A new run (``saved`` is None) is the registered recipe ``name`` with ``overrides``. A resumed run takes its
    recipe from the checkpoint (``saved``, the ``recipe`` field of masklab.json); ``overrides`` then change only
    the keys they name, and a changed key outside :data:`RESUMABLE_CHANGES` (the model size, tokenizer, seq_len,
    data, ...) is a ValueError. ``name``, when given with ``saved``, must name the saved recipe.
    """
    if saved is None:
        if name is None:
            raise ValueError("recipe: a name is required for a new run (run 'masklab list recipe' to see them)")
        return apply_overrides(get_recipe(name), overrides)
    base = from_dict(saved)
    if name is not None and name != base.name:
        raise ValueError(f"recipe: the checkpoint was trained with recipe {base.name!r}, not {name!r}")
    resumed = apply_overrides(base, overrides)
    before, after = to_dict(base), to_dict(resumed)
    fixed = sorted(k for k in after if k not in RESUMABLE_CHANGES and before.get(k) != after[k])
    if fixed:
        raise ValueError(
            f"cannot resume with {', '.join(fixed)} changed: only {', '.join(sorted(RESUMABLE_CHANGES))} can change "
            "mid-run"
        )
    return resumed
