"""Supervised fine-tuning on a labelled stdlib task (:mod:`masklab.data.stdlib_tasks`). Launch:
``masklab train --recipe finetune --out runs/ft init=runs/mlm/model task=keyword classifier=mlm``.

- ``task``: ``keyword`` (a line of code -> its removed leading keyword, 8 classes) or ``module`` (a docstring ->
  its stdlib package, up to 8 classes): one class per text; ``roles`` (each identifier of a line -> def, use or
  attr): one class per token.
- ``classifier``: ``linear``, the model's Hugging Face classification head; or ``mlm``, generative classification
  with the MLM head at "Answer: <mask>" (ModernBERT-Instruct, :mod:`masklab.objectives.finetune`).
- ``layers``: for a causal model, the layers made bidirectional while fine-tuning ("Do Not (Always) Look Right",
  Dukic & Snajder 2024): layer ranges ``0-1,3``, or a bit string over equal groups of layers (``1100`` on 8
  layers: layers 0-3 bidirectional). With ``lora=R`` this is the paper's recipe.

Without ``init`` the model is a fresh ``arch`` / ``preset`` model (the no-pretraining baseline). Test examples
come from the corpus's valid files; ``masklab eval`` reports their accuracy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from masklab.data import stdlib_tasks as T
from masklab.objectives.finetune import Finetune
from masklab.train.recipes.base import Task, TextRecipe, register, seeded

TASKS = ("keyword", "module", "roles")
CLASSIFIERS = ("linear", "mlm")
QUESTIONS = {
    "keyword": "Which keyword was cut from the start of this line?",
    "module": "Which package is this docstring from?",
}


def layer_indices(spec: str, n_layers: int) -> list[int]:
    """``"0-1,3"`` -> ``[0, 1, 3]``; a bit string such as ``"1100"`` marks equal groups of ``n_layers``."""
    from masklab.attention.spec import parse_layers

    if spec and set(spec) <= {"0", "1"} and len(spec) > 1:
        if n_layers % len(spec):
            raise ValueError(f"layers={spec!r}: {n_layers} layers do not split into {len(spec)} equal groups")
        g = n_layers // len(spec)
        return [i for i in range(n_layers) if spec[i // g] == "1"]
    out = parse_layers(spec) if spec else []
    if any(i >= n_layers for i in out):
        raise ValueError(f"layers={spec!r}: the model has layers 0..{n_layers - 1}")
    return out


def _answers(tokenizer, names: tuple[str, ...]) -> tuple[list[int], str]:
    """(answer token per class, the options text): the class names themselves when each is one token, else the
    letters A, B, ... (ModernBERT-Instruct's multiple-choice form)."""
    letters = [chr(ord("A") + c) for c in range(len(names))]
    lettered = ", ".join(f"{x}) {n}" for x, n in zip(letters, names, strict=True))
    for words, options in ((names, ", ".join(names)), (letters, lettered)):
        for space in ("", " "):
            ids = [tokenizer(space + w, add_special_tokens=False)["input_ids"] for w in words]
            if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(ids):
                return [i[0] for i in ids], options
    raise ValueError("classifier=mlm: the tokenizer has no one-token answer for each class")


def _specials(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts (before, after) a text: ([CLS], [SEP]) for BERT, none for masklab's."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    k = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
    return full[:k], full[k + len(plain) :]


def _encode_texts(tokenizer, texts, labels, seq_len: int, tail: str | None) -> torch.Tensor:
    """[N, 2, seq_len]: ids (with the tokenizer's special tokens, then padding) and labels; with ``tail`` (the
    MLM-head template) the text is cut so the template fits and the class sits at its closing ``<mask>``."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    before, after = _specials(tokenizer)
    tail_ids = [] if tail is None else tokenizer(tail, add_special_tokens=False)["input_ids"]
    room = seq_len - len(before) - len(after) - len(tail_ids)
    if room < 4:
        raise ValueError(f"seq_len={seq_len} leaves no room for the text beside the template: raise seq_len")
    out = torch.full((len(texts), 2, seq_len), -100, dtype=torch.long)
    out[:, 0] = pad
    for i, (text, y) in enumerate(zip(texts, labels, strict=True)):
        body = tokenizer(text, add_special_tokens=False)["input_ids"][:room]
        ids = before + body + tail_ids + after
        out[i, 0, : len(ids)] = torch.tensor(ids)
        slot = 0 if tail is None else ids.index(tokenizer.mask_token_id, len(body))
        out[i, 1, slot] = int(y)
    return out


@dataclass
class FinetuneRecipe(TextRecipe):
    task: str = "keyword"  # keyword | module (a class per text) | roles (a class per identifier token)
    classifier: str = "linear"  # linear (classification head) | mlm (generative, the MLM head at "Answer: <mask>")
    layers: str = ""  # causal models: layers made bidirectional ("0-1,3" or group bits "1100"); "" keeps causal
    train_examples: int = 2000  # keyword: split evenly over the classes; roles: lines (module has ~20 per class)
    preset: str = "micro"
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 150  # a short fine-tune: the probes of `masklab compare` run it on every checkpoint
    lr: float = 5e-4
    warmup: int = 15
    eval_every: int = 0
    ckpt_every: int = 0
    eval_batches: int = 100  # the whole test split

    def __post_init__(self):
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.classifier == "mlm" and self.task == "roles":
            raise ValueError("classifier=mlm reads one class per text; task=roles labels tokens (classifier=linear)")
        if self.train_examples < 8:
            raise ValueError(f"train_examples must be >= 8, got {self.train_examples}")
        if self.classifier == "mlm" and not self.init and self.arch != "modernbert":
            raise ValueError("classifier=mlm needs a masked LM: arch=modernbert, or init= an encoder")
        if self.lora and self.classifier == "mlm":
            raise ValueError("lora trains a classification head beside the adapters: use classifier=linear, or lora=0")
        if self.adapt != "none":
            raise ValueError("finetune takes no adapt: classify with the model's own attention")

    @property
    def per_token(self) -> bool:
        return self.task == "roles"

    def _examples(self):
        """(class names, train texts or lines, train labels, test ..., test ...)."""
        if self.task == "keyword":
            d = T.keyword_lines(train=max(1, self.train_examples // len(T.KEYWORDS)))
            return T.KEYWORDS, *d["train"], *d["test"]
        if self.task == "module":
            names, d = T.docstring_families()
            return names, *d["train"], *d["test"]
        return T.ROLES, T.identifier_roles("train", self.train_examples), None, T.identifier_roles("valid", 600), None

    def _model(self, names):
        """(model, tokenizer, facts) for the classifier: the init folder's, or a fresh arch / preset model."""
        from masklab.models import build_model
        from masklab.models.pretrained import load_classifier

        facts: dict = {}
        if self.classifier == "mlm":
            pre = self.pretrained()  # a masked LM with its (possibly fresh, tied) MLM head
            tok = pre.tokenizer if pre else self._tokenizer()
            model = self.make_model(pre, self._info(tok), facts)
            return model, tok, facts
        with seeded(self.seed):
            if self.init:
                pre = load_classifier(self.init, len(names), per_token=self.per_token)
                model, tok = pre.model, pre.tokenizer
                facts.update(init=str(self.init), init_notes=pre.notes)
            else:
                from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

                tok = self._tokenizer()
                config = build_model(self.arch, self.preset, self._info(tok), self.seq_len).config
                config.num_labels = len(names)
                if self.arch == "modernbert":
                    config.classifier_pooling = "mean"
                cls = AutoModelForTokenClassification if self.per_token else AutoModelForSequenceClassification
                model = cls.from_config(config, attn_implementation="sdpa")
        head = tuple(n for n in ("classifier", "score", "head") if isinstance(getattr(model, n, None), torch.nn.Module))
        return self.with_lora(model, facts, head), tok, facts  # a fresh head trains in full beside LoRA

    def _tokenizer(self):
        from masklab.data.files import load_corpus
        from masklab.data.tokenizers import build_tokenizer

        if self.tokenizer == "bytes":
            return build_tokenizer("bytes")
        corpus = load_corpus(self.data)
        return build_tokenizer(self.tokenizer, corpus.train, corpus.fingerprint)

    @staticmethod
    def _info(tok):
        from masklab.data.tokenizers import token_info

        return token_info(tok)

    def _set_layers(self, model) -> None:
        if not self.layers:
            return
        from masklab.attention.hf import bidirectional_layers
        from masklab.models.pretrained import is_causal_config

        if not is_causal_config(model.config):
            raise ValueError(f"layers={self.layers!r} makes causal layers bidirectional; this model is an encoder")
        bidirectional_layers(model, layer_indices(self.layers, model.config.num_hidden_layers))

    def build(self) -> Task:
        names, tr_x, tr_y, te_x, te_y = self._examples()
        tail = answers = None
        model, tok, facts = self._model(names)
        self._set_layers(model)
        if self.per_token:
            train = torch.stack(T.label_tokens(tok, tr_x, self.seq_len), 1)  # (N, 2, L)
            valid = torch.stack(T.label_tokens(tok, te_x, self.seq_len), 1)
        else:
            if self.classifier == "mlm":
                answers, options = _answers(tok, names)
                tail = f"\nQuestion: {QUESTIONS[self.task]} Options: {options}.\nAnswer: {tok.mask_token}"
            train = _encode_texts(tok, tr_x, tr_y, self.seq_len, tail)
            valid = _encode_texts(tok, te_x, te_y, self.seq_len, tail)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        objective = Finetune(model, pad, self.per_token, answers)
        version = ".".join(map(str, sys.version_info[:3]))
        facts.update(task=self.task, classes=list(names), train_examples=len(train), test_examples=len(valid),
                     example_tokens=self.seq_len)  # fmt: skip
        return Task(objective, train, valid, f"py{version}-stdlib-{self.task}", tok, facts)


@register("finetune", "supervised fine-tune on a stdlib task (keyword, module, roles): classification or MLM head")
def finetune():
    return FinetuneRecipe()
