"""MaskAlign: the student sees only visible patches, the teacher stays frozen, alignment is learnable."""

import copy

import torch

from masklab.corrupt import patches as P
from masklab.models.vit_mae import MaskedViTConfig, MaskedViTModel
from masklab.objectives.maskalign import MaskAlign


def _encoder(width):
    """A 2-block encoder over the 4 x 4 grid of 2 x 2 one-channel patches of an 8 x 8 image."""
    return MaskedViTModel(
        MaskedViTConfig(image_size=8, patch_size=2, hidden_size=width, num_hidden_layers=2, num_attention_heads=2)
    )


def _setup(levels=2):
    torch.manual_seed(0)
    teacher = _encoder(24)
    tfun = lambda p: teacher(p, all_layers=True)  # noqa: E731
    wrapper = torch.nn.Module()
    wrapper.enc = teacher
    wrapper.forward = tfun
    student = _encoder(16)
    return MaskAlign(student, wrapper, student_dim=16, teacher_dim=24, student_levels=2, teacher_levels=levels)


def test_teacher_is_frozen_and_student_learns(one_thread):
    model = _setup()
    frozen = copy.deepcopy(model.teacher.state_dict())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.rand(32, 16, 4)
    pm = P.random_patches((4, 4), 0.75, batch=32, seed=0)
    first = None
    for _ in range(25):
        out = model(x, pm)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < 0.7 * first
    assert all(torch.equal(v, model.teacher.state_dict()[k]) for k, v in frozen.items())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert out.per_level.shape == (2,)


def test_student_features_ignore_masked_patches():
    model = _setup(levels=1)
    x = torch.rand(4, 16, 4)
    pm = P.random_patches((4, 4), 0.5, batch=4, seed=1)
    y = x.clone()
    y[pm.mask] = 5.0
    a = model.student(x, pm.ids_keep)
    b = model.student(y, pm.ids_keep)
    assert torch.equal(a, b)


def test_maskalign_is_an_objective_with_keyed_masks_and_a_checkpoint(tmp_path):
    from masklab.corrupt import keyed
    from masklab.objectives.base import Objective
    from masklab.objectives.maskalign import MaskAlignObjective

    obj = MaskAlignObjective(_setup(levels=1), patch_size=2, grid=(4, 4), ratio=0.5)
    assert isinstance(obj, Objective)
    x = torch.rand(6, 1, 8, 8)
    keys = keyed.train_keys(0, 0, torch.arange(6))
    a, _ = obj(x, keys)
    b, _ = obj(x, keys)
    assert torch.equal(a, b)  # the mask is a function of the keys
    ev = obj.evaluate(x, seed=0)
    assert set(ev) == {"loss", "align"} and ev["loss"] > 0
    obj.save_model(tmp_path)
    again = MaskAlignObjective(_setup(levels=1), patch_size=2, grid=(4, 4), ratio=0.5)
    with torch.no_grad():
        again.model.mix.fill_(3.0)
    again.load_model(tmp_path)
    assert torch.equal(again.model.mix, obj.model.mix) and again.evaluate(x, seed=0) == ev
