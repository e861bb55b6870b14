"""MaskAlign: masked image modelling without reconstruction (Xue et al. 2023, "Stare at What You See").

The student encoder sees only the visible patches of a masked image; a frozen teacher sees the whole image.
The student's visible-patch features are aligned with the teacher's features at the same positions (Sec. 3.2,
Eq. 2): no decoder and no mask tokens. Dynamic Alignment (Sec. 3.3, Eq. 3-4) maps each of the student's last
``S`` layers through a linear adapter and mixes them with learned softmax weights per teacher level; both
sides are LayerNorm-ed without affine parameters and compared with smooth-L1.

The teacher is any module mapping patch vectors [B, N, P] to a list of per-level features [B, N, Dt] (for
example a frozen :class:`masklab.models.vit_mae.MaskedViTModel` with ``all_layers=True``, or a CLIP vision tower
wrapped to patches). Its parameters are frozen here and it runs in eval mode under ``no_grad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from masklab.corrupt.patches import PatchMask
from masklab.models.vit_mae import MaskedViTModel, patchify
from masklab.objectives.base import Objective

__all__ = ["MaskAlign", "MaskAlignOutput", "MaskAlignObjective"]


@dataclass
class MaskAlignOutput:
    loss: torch.Tensor  # scalar: mean smooth-L1 over teacher levels and visible patches
    per_level: torch.Tensor  # [levels] loss per teacher level


def _gather(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return x.gather(1, ids[..., None].expand(-1, -1, x.shape[-1]))


class MaskAlign(nn.Module):
    """``forward(patches, patch_mask) -> MaskAlignOutput``; ``patches`` [B, N, P] from
    :func:`~masklab.models.vit_mae.patchify`; the student is the masked ViT's encoder, :class:`MaskedViTModel`."""

    def __init__(
        self,
        student: MaskedViTModel,
        teacher: nn.Module,
        *,
        student_dim: int,
        teacher_dim: int,
        student_levels: int = 1,
        teacher_levels: int = 1,
    ):
        super().__init__()
        if student_levels < 1 or student_levels > len(student.layers):
            raise ValueError(f"student_levels must be in [1, {len(student.layers)}], got {student_levels}")
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        self.student_levels, self.teacher_levels = student_levels, teacher_levels
        self.adapters = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(student_levels))
        self.mix = nn.Parameter(torch.zeros(teacher_levels, student_levels))  # Dynamic Alignment weights

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen teacher: never in training mode
        return self

    def forward(self, patches: torch.Tensor, pm: PatchMask) -> MaskAlignOutput:
        with torch.no_grad():
            # the teacher sees the whole image; a masked-ViT teacher gives every layer's output
            t = (
                self.teacher(patches, all_layers=True)
                if isinstance(self.teacher, MaskedViTModel)
                else self.teacher(patches)
            )
            t = list(t) if isinstance(t, (list, tuple)) else [t]
            t = t[-self.teacher_levels :]
            if len(t) != self.teacher_levels:
                raise ValueError(f"teacher returned {len(t)} levels, expected {self.teacher_levels}")
            targets = [F.layer_norm(_gather(x, pm.ids_keep), x.shape[-1:]) for x in t]  # (B, K, Dt) each
        hidden = self.student(patches, pm.ids_keep, all_layers=True)[-self.student_levels :]  # visible only
        adapted = torch.stack([a(h) for a, h in zip(self.adapters, hidden, strict=True)])  # (S, B, K, Dt)
        weights = self.mix.softmax(-1)  # (T, S)
        losses = []
        for level, target in enumerate(targets):
            pred = torch.einsum("s,sbkd->bkd", weights[level], adapted)
            pred = F.layer_norm(pred, pred.shape[-1:])
            losses.append(F.smooth_l1_loss(pred, target, beta=2.0))
        per_level = torch.stack(losses)
        return MaskAlignOutput(per_level.mean(), per_level.detach())


class MaskAlignObjective(Objective):
    """The training-loop interface around :class:`MaskAlign`: ``forward(images [B, C, H, W], keys) -> (loss,
    metrics)``. Each image's visible patches come from keyed MAE random masking on its key; ``self.model`` is the
    whole :class:`MaskAlign` (student, adapters, frozen teacher), saved as one safetensors file.

    With ``vit`` (a :class:`~masklab.models.vit_mae.MaskedViT` whose encoder is the student), a checkpoint is that
    model's ``save_pretrained`` folder, which every image probe and ``AutoModel`` read, plus the adapters and mixing
    weights in ``maskalign.safetensors``; the frozen teacher is not saved (the recipe names it). The ViT's decoder
    is not trained and counts no FLOPs."""

    name = "maskalign"
    HEAD = "maskalign.safetensors"

    def __init__(self, model: MaskAlign, patch_size: int, grid: tuple[int, int], ratio: float = 0.7, vit=None):
        super().__init__(model)
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        if vit is not None and vit.encoder is not model.student:
            raise ValueError("vit's encoder must be the MaskAlign student")
        self.patch_size, self.grid, self.ratio = patch_size, tuple(grid), ratio
        self.vit = vit

    def _head(self) -> dict[str, torch.Tensor]:
        return {f"adapters.{k}": v for k, v in self.model.adapters.state_dict().items()} | {"mix": self.model.mix}

    def save_model(self, path) -> None:
        if self.vit is None:
            return super().save_model(path)
        from safetensors.torch import save_file

        self.vit.save_pretrained(path, safe_serialization=True)
        save_file({k: v.detach().contiguous() for k, v in self._head().items()}, Path(path) / self.HEAD)

    def load_model(self, path) -> None:
        if self.vit is None:
            return super().load_model(path)
        from safetensors.torch import load_file

        self.vit.load_state_dict(load_file(Path(path) / "model.safetensors", device=str(self.device)))
        head = load_file(Path(path) / self.HEAD, device=str(self.device))
        with torch.no_grad():
            self.model.mix.copy_(head.pop("mix"))
        self.model.adapters.load_state_dict({k.removeprefix("adapters."): v for k, v in head.items()})

    def flop_groups(self):
        """(parameters, share of the patches they process) for :mod:`masklab.compare.flops`: the student and its
        adapters see the visible ``1 - ratio`` of the patches, the frozen teacher all of them (Xue et al. 2023,
        Sec. 3.2); an unused ViT decoder counts nothing."""
        from masklab.compare.flops import matmul_params

        teacher = {id(p) for p in self.model.teacher.parameters()}
        student = [p for p in matmul_params(self.model) if id(p) not in teacher]
        return [(student, 1.0 - self.ratio), (list(self.model.teacher.parameters()), 1.0)]

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        from masklab.corrupt.patches import random_patches

        pm = random_patches(self.grid, self.ratio, keys=keys)
        out = self.model(patchify(batch, self.patch_size), pm)
        return out.loss, {"align": out.loss.detach()}
