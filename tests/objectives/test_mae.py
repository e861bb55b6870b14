"""MAE objective: HF ViTMAE as the oracle for patchify and the normalized-pixel loss; the encoder never sees
masked patches; padded (uneven) rows equal each row alone; HPM's relative loss against the reference formula, its
separate loss decoder, masks from the EMA teacher (timm ModelEma's update), its FLOPs against FlopCounterMode and an
exact resume; training lowers the loss on real digits."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from masklab.corrupt import keyed
from masklab.corrupt import patches as P
from masklab.corrupt.strategies import PATCH
from masklab.models.vit_mae import (
    MaskedViT,
    MaskedViTConfig,
    hpm_rank_loss,
    mae_loss,
    normalized_target,
    patchify,
    unpatchify,
)
from masklab.objectives.mae import MAEObjective, ink_boxes, mask_for, teacher_decay

TINY = dict(
    image_size=8,
    patch_size=2,
    num_channels=1,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=1,
)


def test_patchify_and_loss_match_hugging_face_vitmae():
    cfg = ViTMAEConfig(
        image_size=8,
        patch_size=2,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        norm_pix_loss=True,
    )
    hf = ViTMAEForPreTraining(cfg).eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(patchify(x, 2), hf.patchify(x))
    assert torch.equal(unpatchify(patchify(x, 2), 2, (4, 4), 3), x)
    pm = P.random_patches((4, 4), 0.75, batch=4, seed=0)
    out = hf(x, noise=pm.noise())  # HF masks exactly our patches and reports its loss on them
    assert torch.equal(out.mask.bool(), pm.mask)
    ours, _ = mae_loss(out.logits, normalized_target(patchify(x, 2)), pm.mask)
    assert torch.allclose(ours, out.loss, atol=1e-5)


def test_encoder_never_sees_masked_patches(one_thread):
    model = MaskedViT(MaskedViTConfig(**TINY)).eval()
    x = torch.rand(3, 1, 8, 8)
    pm = P.random_patches((4, 4), 0.75, batch=3, seed=1)
    y = patchify(x, 2).clone()
    y[pm.mask] = torch.randn_like(y[pm.mask]) * 10  # scribble over every masked patch
    a = model.encoder(patchify(x, 2), pm.ids_keep)
    b = model.encoder(y, pm.ids_keep)
    assert torch.equal(a, b)
    # and the loss only counts masked patches: a perfect prediction there gives zero loss
    target = normalized_target(patchify(x, 2))
    pred = torch.where(pm.mask[..., None], target, torch.randn_like(target))
    assert float(mae_loss(pred, target, pm.mask)[0]) == 0.0


def test_decoder_puts_mask_tokens_where_patches_were_masked(one_thread):
    # with a constant embedded encoder output, the decoder input at a masked position is exactly the mask token
    model = MaskedViT(MaskedViTConfig(**TINY)).eval()
    pm = P.random_patches((4, 4), 0.5, batch=2, seed=2)
    with torch.no_grad():
        model.decoder_embed.weight.zero_()
        model.decoder_embed.bias.fill_(7.0)
        x = model._decoder_input(torch.zeros(2, 8, 16), pm.mask, None) - model.decoder_pos
    assert torch.allclose(x[pm.mask], model.mask_token.expand(int(pm.mask.sum()), -1), atol=1e-6)
    assert torch.allclose(x[~pm.mask], torch.full_like(x[~pm.mask], 7.0), atol=1e-6)


def test_padded_uneven_rows_equal_each_row_alone(one_thread):
    """OneRef masks keep different numbers of patches per row; padding them for the encoder (ignored through the
    key padding mask) gives each row exactly what it gets alone, where no padding is needed."""
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, loss_head=True))
    x = torch.rand(3, 1, 8, 8)
    region = torch.zeros(3, 4, 4, dtype=torch.bool)
    region[0, :1, :1] = region[1, :2, :3] = True  # grown by one: 4 and 9 patches; row 2 has no region
    pm = P.referring_patches((4, 4), region, seed=0)
    assert not pm.even
    with torch.no_grad():
        out = model(x, pm)
        for b in range(3):
            alone = model(x[b : b + 1], P.PatchMask(pm.mask[b : b + 1], (4, 4)))
            assert torch.allclose(out.logits[b], alone.logits[0], atol=1e-5)
            assert torch.allclose(out.patch_loss[b], alone.patch_loss[0], atol=1e-5)


def test_hpm_rank_loss_rewards_the_right_order():
    true = torch.stack([torch.randperm(16), torch.randperm(16)]).float() / 16  # distinct losses
    mask = torch.ones(2, 16, dtype=torch.bool)
    good = hpm_rank_loss(1000 * true, true, mask)
    bad = hpm_rank_loss(-1000 * true, true, mask)
    assert float(good) < 0.01 < 10 < float(bad)


def _reference_relative_loss(pred, true, mask):
    """HPM's forward_learning_loss(relative=True) on the masked patches of each row, written out pair by pair:
    pairs with equal losses carry no label and are not counted."""
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        idx = mask[b].nonzero()[:, 0].tolist()
        for i in idx:
            for j in idx:
                t_i, t_j, d = float(true[b, i]), float(true[b, j]), float(pred[b, j] - pred[b, i])
                if t_j > t_i:
                    total -= math.log(1 / (1 + math.exp(-d)) + 1e-6)
                elif t_j < t_i:
                    total -= math.log(1 - 1 / (1 + math.exp(-d)) + 1e-6)
                count += t_j != t_i
    return total / count


def test_hpm_rank_loss_leaves_ties_out_as_the_reference():
    g = torch.Generator().manual_seed(0)
    true = torch.randint(0, 3, (3, 12), generator=g).float()  # many tied losses
    pred = torch.randn(3, 12, generator=g)
    mask = torch.rand(3, 12, generator=g) < 0.7
    assert float(hpm_rank_loss(pred, true, mask)) == pytest.approx(_reference_relative_loss(pred, true, mask), abs=1e-4)
    # all losses equal: nothing to rank, no loss (the old rule labelled ties 0 and pushed p_i below p_j)
    assert float(hpm_rank_loss(pred, torch.ones(3, 12), mask)) == 0.0


def test_hpm_loss_predictor_is_a_separate_decoder(one_thread):
    """Reference models_mae_learn_loss.py: decoder_blocks_losspred beside decoder_blocks, on the same input. The
    ranking loss trains the loss decoder and the shared input (encoder, decoder embedding, mask token), never the
    reconstruction decoder; the reconstruction loss never reaches the loss decoder."""
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, loss_head=True))
    x, pm = torch.rand(4, 1, 8, 8), P.random_patches((4, 4), 0.5, batch=4, seed=0)
    out = model(x, pm)
    names = dict(model.named_parameters())
    recon_loss = mae_loss(out.logits, out.target, pm.mask)[0]
    (out.loss - recon_loss).backward(retain_graph=True)  # the ranking loss alone
    rank = {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in names.items()}
    model.zero_grad(set_to_none=True)
    recon_loss.backward()
    recon = {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in names.items()}
    assert all(rank[n] and not recon[n] for n in names if n.startswith(("loss_decoder", "loss_head")))
    assert all(recon[n] and not rank[n] for n in names if n.startswith(("decoder.", "decoder_norm", "head.")))
    assert rank["decoder_embed.weight"] and rank["mask_token"] and rank["encoder.embed.weight"]


def _hpm_objective(total_steps=10):
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, loss_head=True))
    return MAEObjective(model, "hpm", ratio=0.5, total_steps=total_steps).train()


def test_hpm_masks_come_from_the_ema_teacher(one_thread):
    """Reference engine_pretrain.py: the mask is the EMA teacher's (model_ema.ema, a copy of the model at the
    start), updated once per optimizer step as timm's ModelEma: ema = d * ema + (1 - d) * model."""
    obj = _hpm_objective(total_steps=2)
    x, keys = torch.rand(6, 1, 8, 8), keyed.example_keys(0, 0, torch.arange(6))
    start = {k: v.clone() for k, v in obj.teacher.state_dict().items()}
    obj(x, keys, batch_key=torch.tensor(11))  # step 0: the teacher is the initial model
    assert all(torch.equal(v, obj.model.state_dict()[k]) for k, v in start.items())
    with torch.no_grad():  # the student moves (as an optimizer step would)
        for p in obj.model.parameters():
            p.add_(torch.randn_like(p))
    student = {k: v.clone() for k, v in obj.model.state_dict().items()}
    obj(x, keys, batch_key=torch.tensor(11))  # a second micro-step of step 0: no update
    assert all(torch.equal(v, obj.teacher.state_dict()[k]) for k, v in start.items())
    loss, _ = obj(x, keys, batch_key=torch.tensor(12))  # step 1: one update with the decay after step 0
    d = teacher_decay(0, 2, (0.999, 0.9999))
    assert d == 0.999
    for k, v in obj.teacher.state_dict().items():
        assert torch.allclose(v, d * start[k] + (1 - d) * student[k], atol=1e-6), k
    # the mask of step 1 (of 2) is the teacher's: at progress 1, half the masked patches are its hardest
    with torch.no_grad():
        pm = P.hpm_patches(obj.teacher.predict_loss(x), (4, 4), 0.5, progress=1.0, keys=keys)
        pm_student = P.hpm_patches(obj.model.predict_loss(x), (4, 4), 0.5, progress=1.0, keys=keys)
        assert float(loss) == pytest.approx(float(obj.model(x, pm).loss), abs=1e-6)
        assert not torch.equal(pm.mask, pm_student.mask)
    assert all(not p.requires_grad for p in obj.teacher.parameters())


def test_teacher_decay_rises_linearly_from_0999_to_09999():
    assert [teacher_decay(s, 5, (0.999, 0.9999)) for s in (0, 2, 4, 9)] == pytest.approx(
        [0.999, 0.99945, 0.9999, 0.9999]
    )


def test_hpm_flops_count_the_teacher_forward(one_thread):
    """The budget's count of an HPM step (student 6 x params x tokens, the teacher's encoder and loss branch
    2 x params x every patch) is within 10% of torch's FlopCounterMode, as tests/compare/test_flops.py asks of
    every recipe."""
    from torch.utils.flop_counter import FlopCounterMode

    from masklab.compare.flops import flops_per_step
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    recipe = apply_overrides(get_recipe("mae-digits"), ["strategy=hpm", "batch_size=8"])
    task = recipe.build()
    x = task.train[:8]
    keys = keyed.example_keys(0, 0, torch.arange(8))
    task.objective.train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = task.objective(x, keys, position=torch.arange(8), batch_size=8, batch_key=keys.sum())
        loss.backward()
    measured, counted = counter.get_total_flops(), flops_per_step(recipe, task)
    assert abs(counted / measured - 1) <= 0.10, (counted, measured)


def test_hpm_resumed_run_equals_an_uninterrupted_one(one_thread, tmp_path):
    """The teacher and the step count travel in the checkpoint (model/teacher/), so stopping after 2 steps and
    resuming gives the same student and teacher as 4 steps in one go."""
    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    over = ["strategy=hpm", "image_size=8", "dim=16", "depth=1", "decoder_dim=16", "mask_ratio=0.5", "steps=4"]
    over += ["batch_size=8", "eval_every=0", "ckpt_every=0", "eval_batches=1", "ema_decay=0.5", "ema_decay_end=0.8"]
    recipe = apply_overrides(get_recipe("mae-digits"), over)
    train(recipe, tmp_path / "whole", progress=False)
    train(recipe, tmp_path / "parts", progress=False, stop_at=2)
    assert json.loads((tmp_path / "parts/model/teacher/ema.json").read_text()) == {"steps_begun": 2}
    train(recipe, tmp_path / "parts", progress=False, resume=True)
    for name in ("model.safetensors", "teacher/model.safetensors"):
        a, b = load_file(tmp_path / "whole/model" / name), load_file(tmp_path / "parts/model" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    teacher, student = (
        load_file(tmp_path / "whole/model/teacher/model.safetensors"),
        load_file(tmp_path / "whole/model/model.safetensors"),
    )
    assert not all(torch.equal(teacher[k], student[k]) for k in student)  # the teacher lags the student


def test_ink_boxes_bound_the_digit():
    x = torch.zeros(2, 1, 16, 16)
    x[0, 0, 3:9, 5:7] = 1.0
    assert ink_boxes(x).tolist() == [[5.0, 3.0, 7.0, 9.0], [0.0, 0.0, 16.0, 16.0]]


def test_mask_for_gives_every_strategy_its_count(one_thread):
    torch.manual_seed(0)
    model = MaskedViT(MaskedViTConfig(**TINY, loss_head=True)).eval()
    x = torch.rand(8, 1, 8, 8)
    keys = keyed.example_keys(0, 0, torch.arange(8))
    for strategy in PATCH.names():
        pm = mask_for(strategy, model, x, keys, 0.5, 0.5)
        counts = pm.mask.sum(1)
        assert bool((counts > 0).all() and (counts < 16).all()), strategy
        if strategy != "referring":
            assert bool((counts == counts[0]).all()), strategy
        assert model(x, pm).loss.item() > 0
    # referring: the ink box grown by one patch at gamma = ratio, the rest at OneRef's beta
    inside = P._grow(P.region_from_boxes(ink_boxes(x), (4, 4), image_size=(8, 8)), 1).view(8, -1)
    pm = mask_for("referring", model, x, keys, 0.5, 0.5)
    n = inside.sum(1)
    assert torch.equal((pm.mask & inside).sum(1), n - (n * 0.5).floor().long())
    assert torch.equal((pm.mask & ~inside).sum(1), (16 - n) - ((16 - n) * 0.65).floor().long())


def test_training_lowers_the_masked_loss_on_digits(one_thread, tmp_path):
    from safetensors.torch import load_file
    from sklearn.datasets import load_digits

    from masklab.train.loop import train
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    x = torch.tensor(load_digits().images[:128], dtype=torch.float32)[:, None] / 16  # (128, 1, 8, 8)
    keys = keyed.example_keys(9, 0, torch.arange(64))
    for strategy in ("random", "hpm"):
        cfg = MaskedViTConfig(**{**TINY, "num_attention_heads": 4}, loss_head=strategy == "hpm")
        torch.manual_seed(0)
        before = MaskedViT(cfg).eval()
        pm = mask_for("random", before, x[:64], keys, 0.5, 1.0)
        over = [f"strategy={strategy}", "image_size=8", "dim=16", "depth=1", "decoder_dim=16", "mask_ratio=0.5"]
        over += ["steps=25", "batch_size=32", "lr=5e-3", "warmup=3", "eval_every=0", "ckpt_every=0", "eval_batches=1"]
        train(apply_overrides(get_recipe("mae-digits"), over), tmp_path / strategy, progress=False)  # the one loop
        after = MaskedViT(cfg).eval()
        after.load_state_dict(load_file(tmp_path / strategy / "model" / "model.safetensors"))
        with torch.no_grad():
            assert float(after(x[:64], pm).recon) < 0.8 * float(before(x[:64], pm).recon), strategy


def test_hpm_bad_settings_are_one_clear_error():
    from masklab.train.recipes import get_recipe
    from masklab.train.recipes.base import apply_overrides

    with pytest.raises(ValueError, match="strategy 'hpm' needs a loss predictor"):
        MAEObjective(MaskedViT(MaskedViTConfig(**TINY)), "hpm")
    with pytest.raises(ValueError, match="ema_decay must be two numbers"):
        MAEObjective(MaskedViT(MaskedViTConfig(**TINY, loss_head=True)), "hpm", ema_decay=(0.9, 1.5))
    with pytest.raises(ValueError, match="need 0 <= ema_decay <= ema_decay_end <= 1"):
        apply_overrides(get_recipe("mae-digits"), ["strategy=hpm", "ema_decay=0.99999"])
