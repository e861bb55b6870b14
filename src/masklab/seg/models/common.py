"""What the canvas segmentation objectives share: rows in, (loss, metrics) out, and a held-out evaluation that
segments and scores (gIoU, cIoU, Pr@0.5 against the pixel masks; :mod:`masklab.seg.metrics`), counting the forward
passes (NFE) and answer tokens each example needed."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from masklab.objectives.base import Objective, eval_batches
from masklab.seg.metrics import intersection_union, summarize
from masklab.seg.models.rows import Batch, Layout

__all__ = ["Segmented", "CanvasObjective"]


@dataclass
class Segmented:
    """Predictions for a batch: ``masks`` (B, S, S) bool, per example the forward passes it needed alone
    (``nfe``), the tokens it generated (``tokens``), and whether its answer was well formed (``valid``)."""

    masks: torch.Tensor
    nfe: torch.Tensor
    tokens: torch.Tensor
    valid: torch.Tensor


class CanvasObjective(Objective, abc.ABC):
    """An objective over packed canvas rows (:class:`~masklab.seg.models.rows.CanvasRows`) with a ``segment``
    method; its ``evaluate`` adds segmentation metrics to the teacher-forced loss."""

    eval_batch_size = 32

    def __init__(self, model, tokenizer, layout: Layout):
        super().__init__(model)
        self.tokenizer, self.layout = tokenizer, layout
        self.flop_tokens = 0  # decoder positions of one training example (set by :meth:`measure`)

    def batch(self, rows: torch.Tensor) -> Batch:
        return Batch.unpack(rows.to(self.device), self.layout)

    @abc.abstractmethod
    def sequence_length(self, b: Batch) -> int:
        """Decoder positions of one training forward over the (trimmed) batch ``b``."""

    @abc.abstractmethod
    def segment(self, b: Batch) -> Segmented:
        """Predicted masks of a batch, as at inference."""

    def measure(self, rows: torch.Tensor) -> int:
        """Record and return the decoder positions per example of a training step on ``rows`` (the FLOP count's
        ``example_tokens``: answers are trimmed to the batch's longest, so this is the first batch's length)."""
        self.flop_tokens = self.sequence_length(Batch.unpack(rows, self.layout).trimmed())
        return self.flop_tokens

    def flop_groups(self):
        """(parameters, share of the ``flop_tokens`` decoder positions they see) for :mod:`masklab.compare.flops`:
        the ViT runs on its patches and CLS token, the projector on the image tokens, the decoder and LM head on
        every position. The ViT's CLS token and position table are added, not multiplied: left out, as
        embeddings are."""
        from masklab.compare.flops import matmul_params

        L = max(self.flop_tokens, 1)
        vlm = self.vlm
        vit, proj = vlm.model.vision_tower, vlm.model.multi_modal_projector
        taken = {id(p) for m in (vit, proj) for p in m.parameters()}
        added = {id(p) for p in vit.embeddings.parameters(recurse=False)}  # cls_token, position_embeddings
        lm = [p for p in matmul_params(vlm) if id(p) not in taken]
        vit_params = [p for p in matmul_params(vit) if id(p) not in added]
        patches = vlm.config.image_seq_length * 4 + 1
        return [(vit_params, patches / L), (matmul_params(proj), vlm.config.image_seq_length / L), (lm, 1.0)]

    def load_model(self, path) -> None:
        """Weights of a ``save_pretrained`` folder, read back by the model's own ``from_pretrained`` (which maps
        InternVL's saved key names, ``language_model.model.*``, to its module names, ``model.language_model.*``)."""
        loaded = type(self.model).from_pretrained(path, local_files_only=True)
        missing, unexpected = self.model.load_state_dict(loaded.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(f"checkpoint {path} does not match the model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")  # fmt: skip

    @property
    def vlm(self):
        """The InternVL model (the objective's model, or the one inside it)."""
        return self.model

    @torch.no_grad()
    def evaluate(self, examples, seed: int = 0, batch_size: int | None = None, max_batches: int | None = None):
        """Teacher-forced loss and metrics, and the segmentation metrics of :meth:`segment`, over fixed held-out
        batches: gIoU, cIoU, Pr@0.5 (LISA's empty-target rule), the mean NFE and generated tokens per example, and
        the share of well-formed answers."""
        batch_size = batch_size or self.eval_batch_size
        was = self.training
        self.eval()
        totals: dict[str, float] = {}
        inters, unions, nfe, tokens, valid = [], [], [], [], []
        for rows, keys, pos, bkey in eval_batches(examples, seed, batch_size, max_batches):
            dev = self.device
            loss, metrics = self(rows.to(dev), keys.to(dev), position=pos.to(dev), batch_size=len(rows),
                                 batch_key=bkey.to(dev))  # fmt: skip
            for k, v in {"loss": loss, **metrics}.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(rows)
            b = self.batch(rows)
            seg = self.segment(b)
            i, u = intersection_union(seg.masks, b.mask)
            inters += i.tolist()
            unions += u.tolist()
            nfe += seg.nfe.tolist()
            tokens += seg.tokens.tolist()
            valid += seg.valid.tolist()
        self.train(was)
        n = max(len(inters), 1)
        out = {k: v / n for k, v in totals.items()}
        s = summarize(inters, unions)
        out.update(gIoU=s["gIoU"], cIoU=s["cIoU"], **{"Pr@0.5": s["Pr@0.5"]})
        out.update(nfe=sum(nfe) / n, answer_tokens=sum(tokens) / n, well_formed=sum(valid) / n, examples=len(inters))
        return out
