"""Masked frame prediction: masked frames are hidden from the model, padding and weights shape the loss."""

import torch

from masklab.corrupt.frames import span_mask
from masklab.objectives.frames import MaskedFramePredictor, masked_frame_loss


def test_masked_frames_are_hidden_from_the_model():
    torch.manual_seed(0)
    model = MaskedFramePredictor(feat_dim=5, dim=16, depth=1, heads=2).eval()
    x = torch.randn(3, 40, 5)
    mask = span_mask((3, 40), 0.5, 4, seed=0)
    y = torch.where(mask[..., None], torch.randn_like(x) * 9, x)
    assert torch.allclose(model(x, mask).pred, model(y, mask).pred)


def test_loss_skips_padding_and_applies_utterance_weights():
    pred, frames = torch.zeros(2, 6, 1), torch.ones(2, 6, 1)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert float(masked_frame_loss(pred, frames, mask)) == 1.0
    w = torch.tensor([2.0, 0.5])
    assert abs(float(masked_frame_loss(pred, frames, mask, w)) - (2 * 2 + 0.5 * 4) / 6) < 1e-6
    model = MaskedFramePredictor(feat_dim=1, dim=8, depth=1, heads=2)
    full = torch.ones(2, 6, dtype=torch.bool)
    out = model(frames, full, lengths=torch.tensor([2, 4]))
    ref = masked_frame_loss(out.pred, frames, mask)
    assert torch.allclose(out.loss, ref)


def test_training_learns_to_fill_smooth_signals(one_thread):
    torch.manual_seed(0)
    t = torch.linspace(0, 6.28, 32)
    freq = torch.rand(32, 1) * 2 + 0.5
    x = torch.stack([torch.sin(freq * t), torch.cos(freq * t)], -1)  # (32, 32, 2)
    model = MaskedFramePredictor(feat_dim=2, dim=16, depth=1, heads=2)
    test_mask = span_mask((32, 32), 0.3, 3, seed=1, epoch=999)
    with torch.no_grad():
        before = float(model(x, test_mask).loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(120):
        loss = model(x, span_mask((32, 32), 0.3, 3, seed=0, epoch=step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(model(x, test_mask).loss)
    assert after < 0.6 * before


def test_frame_objective_trains_through_the_objective_interface(one_thread, tmp_path):
    from masklab.corrupt import keyed
    from masklab.objectives.base import Objective
    from masklab.objectives.frames import FrameObjective

    torch.manual_seed(0)
    t = torch.linspace(0, 6.28, 32)
    freq = torch.rand(32, 1) * 2 + 0.5
    x = torch.stack([torch.sin(freq * t), torch.cos(freq * t)], -1)  # (32, 32, 2)
    obj = FrameObjective(MaskedFramePredictor(feat_dim=2, dim=16, depth=1, heads=2), 0.3, 3)
    assert isinstance(obj, Objective)
    before = obj.evaluate(x, seed=1)["loss"]
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-2)
    for step in range(120):
        loss, _ = obj(x, keyed.train_keys(0, step, torch.arange(32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = obj.evaluate(x, seed=1)
    assert after["loss"] < 0.6 * before
    obj.save_model(tmp_path)
    again = FrameObjective(MaskedFramePredictor(feat_dim=2, dim=16, depth=1, heads=2), 0.3, 3)
    again.load_model(tmp_path)
    assert again.evaluate(x, seed=1) == after
