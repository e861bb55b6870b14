"""MAE: masked autoencoding of image patches (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners"), and HPM (Wang et al. 2023, "Hard Patches Mining for Masked Image Modeling") on top of it.

The model is :class:`masklab.models.vit_mae.MaskedViT` (encoder on the visible patches, light decoder with a shared
mask token, MSE on masked patches of per-patch normalized pixels; with HPM a second, loss-predicting decoder and the
relative loss). This module turns it into a training objective: :func:`mask_for` gives the mask of any patch
strategy (:data:`masklab.corrupt.strategies.PATCH`) for a batch (HPM asks a model for its predicted losses,
referring masks the digit's ink box from :func:`ink_boxes`), and :class:`MAEObjective` trains the model through the
one loop (:func:`masklab.train.loop.train`, recipe ``mae-digits``). The linear probe that evaluates the learnt
features is :func:`masklab.train.probe.linear_probe`.

HPM's masks come from an EMA teacher, as in the reference (``engine_pretrain.py``: ``model_ema.ema`` predicts the
losses of the whole image, ``generate_mask`` masks the hardest, ``model_ema.update(model)`` after each optimizer
step, decay 0.999 rising to 0.9999; ``main_pretrain.py``: timm's ``ModelEma``, a copy of the model at the start).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH
from masklab.models.vit_mae import MaskedViT
from masklab.objectives.base import Objective

__all__ = ["MAEObjective", "teacher_decay", "ema_update", "ink_boxes", "mask_for"]

TEACHER = "teacher"  # the checkpoint subfolder of HPM's EMA teacher (a save_pretrained MaskedViT + ema.json)


def ink_boxes(images: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """[B, 4] (x0, y0, x1, y1) pixel box around the pixels above ``threshold`` (the digit): the referred
    region."""
    ink = images.amax(1) > threshold  # (B, H, W)
    B, H, W = ink.shape
    rows, cols = ink.any(2), ink.any(1)
    r = torch.arange(H, device=images.device)
    c = torch.arange(W, device=images.device)
    y0 = torch.where(rows, r, H).amin(1)
    y1 = torch.where(rows, r + 1, 0).amax(1)
    x0 = torch.where(cols, c, W).amin(1)
    x1 = torch.where(cols, c + 1, 0).amax(1)
    empty = y1 <= y0
    box = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(empty[:, None], torch.tensor([0.0, 0.0, W, H], device=images.device), box)


def mask_for(
    strategy: str, model: MaskedViT, images: torch.Tensor, keys: torch.Tensor, ratio: float, progress: float
) -> P.PatchMask:
    """The patch mask of ``strategy`` for a batch. HPM asks ``model`` (in training, the EMA teacher) for its
    predicted losses; referring masks the digit's ink box at ``ratio`` (OneRef's gamma) and the rest at OneRef's
    beta (:data:`masklab.corrupt.patches.ONEREF_OUTSIDE`)."""
    grid = model.config.grid
    if strategy == "hpm":
        return P.hpm_patches(model.predict_loss(images), grid, ratio, progress=progress, keys=keys)
    if strategy == "referring":
        box = ink_boxes(images)
        return P.referring_patches(grid, boxes=box, image_size=images.shape[-2:], inside_ratio=ratio, keys=keys)
    if strategy == "block":
        N = grid[0] * grid[1]
        return P.block_patches(grid, ratio, keys=keys, min_block=max(1, N // 16), max_block=N // 3)
    if strategy == "simmim":
        return P.simmim_patches(grid, ratio, keys=keys, cell=2)
    return PATCH.get(strategy)(grid, keys, ratio=ratio)


def teacher_decay(step: int, total_steps: int, decay: tuple[float, float]) -> float:
    """The teacher's decay after optimizer step ``step`` (0-based): linear from ``decay[0]`` to ``decay[1]`` over
    training. The reference raises it per epoch, 0.999 + epoch / 100 * (0.9999 - 0.999), held after epoch 100."""
    start, end = decay
    return start + (end - start) * min(1.0, step / max(total_steps - 1, 1))


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` on every state-dict tensor (timm's ``ModelEma``)."""
    theirs = student.state_dict()
    for name, mine in teacher.state_dict().items():
        mine.lerp_(theirs[name].to(mine.dtype), 1.0 - decay)


class MAEObjective(Objective):
    """The training-loop interface around :class:`~masklab.models.vit_mae.MaskedViT`: ``forward(images, keys) ->
    (loss, metrics)``. ``ratio`` defaults to the model's ``config.mask_ratio``.

    With ``strategy="hpm"`` the objective holds the EMA teacher (a frozen copy of the model at the start). A new
    optimizer step is recognised by a new ``batch_key`` (the loop gives every micro-step of a step the same one):
    the teacher then takes in the student's last update with :func:`teacher_decay`, and HPM's easy-to-hard progress is
    (steps begun) / ``total_steps``. The teacher and the step count are saved in the checkpoint's ``teacher/``
    folder, so a resumed run equals an uninterrupted one.
    """

    name = "mae"
    eval_batch_size = 64

    def __init__(
        self,
        model: MaskedViT,
        strategy: str = "random",
        ratio: float | None = None,
        total_steps: int = 1,
        ema_decay: tuple[float, float] = (0.999, 0.9999),
    ):
        super().__init__(model)
        PATCH[strategy]  # an unknown name is one ValueError naming the choices
        self.strategy, self.total_steps = strategy, max(total_steps, 1)
        self.ratio = model.config.mask_ratio if ratio is None else ratio
        if not all(0.0 <= d <= 1.0 for d in ema_decay):
            raise ValueError(f"ema_decay must be two numbers in [0, 1], got {ema_decay}")
        self.ema_decay = tuple(float(d) for d in ema_decay)
        self.teacher = None
        if strategy == "hpm":
            if model.loss_head is None:
                raise ValueError("strategy 'hpm' needs a loss predictor: build the model with loss_head=True")
            self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.steps_begun = 0  # optimizer steps whose first micro-step this objective has seen
        self._step_key = None  # the batch_key of the step in progress

    def flop_groups(self):
        """(parameters, share of the patches they process) for :mod:`masklab.compare.flops`: MAE's encoder sees
        only the visible ``1 - ratio`` of the patches, the decoders all of them (He et al. 2022, Sec. 3); HPM's
        teacher runs its encoder and loss branch (not its reconstruction decoder) forward on every patch, counted
        as frozen. ``referring`` masks a region-dependent share; it is counted at ``ratio``."""
        from masklab.compare.flops import matmul_params

        encoder = list(self.model.encoder.parameters())
        ids = {id(p) for p in encoder}
        groups = [(encoder, 1.0 - self.ratio), ([p for p in matmul_params(self.model) if id(p) not in ids], 1.0)]
        if self.teacher is not None:
            groups.append(([p for m in self.teacher.loss_predictor_modules() for p in matmul_params(m)], 1.0))
        return groups

    def _begin_step(self, batch_key) -> None:
        """Count optimizer steps; at the first micro-step of each step after the first, fold the student (as the
        last optimizer step left it) into the teacher, as the reference does right after that step."""
        key = None if batch_key is None else int(batch_key)
        if key is not None and key == self._step_key:
            return  # a later micro-step of the same optimizer step
        self._step_key = key
        if self.teacher is not None and self.steps_begun > 0:
            ema_update(self.teacher, self.model, teacher_decay(self.steps_begun - 1, self.total_steps, self.ema_decay))
        self.steps_begun += 1

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        if self.training:
            self._begin_step(ctx.get("batch_key"))
        progress = min(1.0, self.steps_begun / self.total_steps)  # reference: (epoch + 1) / epochs
        masker = self.teacher if self.teacher is not None else self.model
        pm = mask_for(self.strategy, masker, batch, keys, self.ratio, progress)
        out = self.model(batch, pm)
        return out.loss, {"recon": out.recon}

    def save_model(self, path: Path) -> None:
        """The model as a Hugging Face folder; with HPM, the teacher in ``teacher/`` and the step count beside it."""
        super().save_model(path)
        if self.teacher is not None:
            self.teacher.save_pretrained(Path(path) / TEACHER, safe_serialization=True)
            (Path(path) / TEACHER / "ema.json").write_text(json.dumps({"steps_begun": self.steps_begun}))

    def load_model(self, path: Path) -> None:
        super().load_model(path)
        if self.teacher is not None:
            folder = Path(path) / TEACHER
            if not (folder / "model.safetensors").is_file():
                raise ValueError(f"checkpoint {path} has no HPM teacher ({TEACHER}/), so HPM cannot resume from it")
            self.teacher.load_state_dict(load_file(folder / "model.safetensors", device=str(self.device)))
            self.steps_begun = int(json.loads((folder / "ema.json").read_text())["steps_begun"])
            self._step_key = None
