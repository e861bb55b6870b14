"""The interface every objective implements, so the training loop never branches on a method name.

An objective is an ``nn.Module`` that owns the model(s) it trains. The loop calls

    loss, metrics = objective(batch, keys, position=..., batch_size=..., batch_key=...)

with ``batch`` a [B, ...] tensor of examples, ``keys`` [B] per-example keys from (seed, epoch, example index)
(:func:`masklab.corrupt.keyed.train_keys`), ``position`` [B] the examples' places in the global batch,
``batch_size`` the global batch size and ``batch_key`` a key for the whole step (for coupled noise such as
stratified t; :func:`masklab.corrupt.keyed.batch_key` of the global batch's keys). ``loss`` is a scalar
averaged over this micro-batch; ``metrics`` maps names to detached scalars.

``evaluate(examples, seed)`` returns a dict of floats on held-out examples, and ``save_model(dir)`` /
``load_model(dir)`` write and read the trained weights (``save_pretrained`` folders).
"""

from __future__ import annotations

import abc
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from masklab.corrupt import keyed

__all__ = ["Objective", "logits_of", "eval_batches"]


def logits_of(out) -> torch.Tensor:
    """Logits [B, L, V] from an HF output or a plain tensor."""
    return out.logits if hasattr(out, "logits") else out


def eval_batches(examples: torch.Tensor, seed: int, batch_size: int, max_batches: int | None):
    """Fixed held-out batches with keys (seed, epoch=-1, index): the same every time, on every machine."""
    n = len(examples) if max_batches is None else min(len(examples), max_batches * batch_size)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        keys = keyed.eval_keys(seed, idx)
        yield examples[idx], keys, idx - start, keyed.batch_key(keys)


class Objective(nn.Module, abc.ABC):
    """Base class: holds ``self.model`` (the model that is saved as the checkpoint)."""

    name = "objective"
    eval_batch_size = 32  # held-out examples per evaluation batch

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @abc.abstractmethod
    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx) -> tuple[torch.Tensor, dict]:
        """(loss, metrics) for one micro-batch; see the module docstring."""

    def begin_step(self, step: int, key: torch.Tensor) -> None:
        """The loop calls this before each optimizer step with the step (0-based) and its key; a model that changes
        with the step (an adapted causal LM annealing its attention) gets both through its own ``begin_step``."""
        hook = getattr(self.model, "begin_step", None)
        if callable(hook):
            hook(step, key)

    @torch.no_grad()
    def evaluate(
        self, examples: torch.Tensor, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None
    ) -> dict[str, float]:
        """Mean of each metric over fixed held-out batches (weighted by batch size; ``batch_size`` defaults to
        the objective's ``eval_batch_size``)."""
        batch_size = batch_size or self.eval_batch_size
        was = self.training
        self.eval()
        totals: dict[str, float] = {}
        count = 0
        for batch, keys, pos, bkey in eval_batches(examples, seed, batch_size, max_batches):
            loss, metrics = self(
                batch.to(self.device),
                keys.to(self.device),
                position=pos.to(self.device),
                batch_size=len(batch),
                batch_key=bkey.to(self.device),
            )
            for k, v in {"loss": loss, **metrics}.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(batch)
            count += len(batch)
        self.train(was)
        return {k: v / max(count, 1) for k, v in totals.items()}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_model(self, path: Path) -> None:
        """``save_pretrained`` for Hugging Face models; a plain ``nn.Module`` writes its tensors to
        ``model.safetensors`` (what :meth:`load_model` reads in both cases). A model with LoRA adapters writes
        the adapter to ``adapter/`` and the merged model beside it (:mod:`masklab.models.lora`)."""
        from masklab.models.lora import adapter_folder, merged, peft_model

        if (peft := peft_model(self.model)) is not None:
            peft.save_pretrained(adapter_folder(path))
            merged(self.model).save_pretrained(path, safe_serialization=True)
            return
        if hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(path, safe_serialization=True)
            return
        Path(path).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, Path(path) / "model.safetensors")

    def load_model(self, path: Path) -> None:
        from masklab.models.lora import adapter_folder, peft_model

        if (peft := peft_model(self.model)) is not None:  # resume: the adapter onto the same frozen base
            from peft import set_peft_model_state_dict

            state = load_file(adapter_folder(path) / "adapter_model.safetensors", device=str(self.device))
            result = set_peft_model_state_dict(peft, state)
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"adapter in {path} does not match the model: {result.unexpected_keys[:3]}")
            return
        state = load_file(Path(path) / "model.safetensors", device=str(self.device))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or {})
        missing = [k for k in missing if k not in tied and not k.endswith("decoder.weight")]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {path} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
